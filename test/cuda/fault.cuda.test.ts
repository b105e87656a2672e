/**
 * Fault injection in the CUDA path, on a GPU. Child processes started with
 * SSD_KERNELS_FAULT_INJECT=1 (test/cuda/fault-child.ts) arm faults through the addon's test-only
 * cudaInjectFault and make calls:
 *
 *   - 'launch' (an invalid kernel launch, cudaErrorInvalidConfiguration) and 'alloc' (a cudaMalloc
 *     beyond the device, cudaErrorMemoryAllocation), neither sticky: the forward (host and device
 *     tensors), the backward and the step reject with ERR_SSD_CUDA (ERR_SSD_OUT_OF_MEMORY for the
 *     allocation, the package's code for cudaErrorMemoryAllocation) naming the CUDA error; the same
 *     call afterwards gives the bits of a clean run; device memory in use returns to its level; a host
 *     state stepped in a failed call keeps its values; the process lives on and exits normally.
 *   - 'trap' (a kernel that executes __trap(), a sticky error): the call that meets it rejects with
 *     ERR_SSD_CUDA naming the error and saying the CUDA context is lost; every later CUDA call
 *     (forward, backward, step, device 'auto', toDevice, toHost, cudaEmptyCache, the C ABI on device
 *     memory) is refused at once with ERR_SSD_CUDA (SSD_ERR_CUDA) saying to restart the process; CPU
 *     calls still give their bits; the process exits normally. In its own child, so that the rest of
 *     the GPU suite keeps a working context.
 *
 * Runs from the compiled tests (dist/test/cuda, as the GPU suite does). Without a usable GPU every
 * test here is skipped, and the suite says why.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backends } from '../../lib/index';
import { packageRoot } from '../../lib/native';
import type { Attempt } from './fault-child';

const cuda = backends().cuda;
const child = path.join(packageRoot(), 'dist', 'test', 'cuda', 'fault-child.js');
const describeGpu = cuda.available ? describe : describe.skip;

test('CUDA availability is reported (the fault-injection tests run only where it is available)', () => {
  if (!cuda.available) {
    console.log(`GPU fault-injection tests skipped: CUDA is unavailable here (${cuda.reason})`);
    expect(cuda.reason.length).toBeGreaterThan(0);
  } else {
    expect(fs.existsSync(child)).toBe(true); // npm run build:ts builds it
  }
});

/** Runs the child on `scenario` and returns its JSON; it must exit by itself, with status 0, in time. */
function runChild<T>(scenario: string): T {
  const r = spawnSync(process.execPath, [child, scenario], {
    cwd: packageRoot(),
    encoding: 'utf8',
    timeout: 240000,
    env: { ...process.env, SSD_KERNELS_FAULT_INJECT: '1' },
  });
  if (r.error) throw new Error(`the ${scenario} child did not finish: ${r.error.message}\n${r.stderr}`);
  if (r.status !== 0 || r.signal !== null) throw new Error(`the ${scenario} child exited with status ${r.status}, signal ${r.signal}:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

interface NonStickyRow {
  kind: 'launch' | 'alloc';
  op: string;
  failed: Attempt;
  sameBitsAfter?: boolean;
  inUseBefore?: number;
  inUseAfter?: number;
  stateUntouched?: boolean;
}

describeGpu('faults that are not sticky: the call rejects, the next one works', () => {
  test("'launch' and 'alloc' in the forward, backward and step", () => {
    const { rows } = runChild<{ rows: NonStickyRow[] }>('non-sticky');
    expect(rows.length).toBe(2 * 5 + 1);
    for (const row of rows) {
      const where = `${row.kind} / ${row.op}`;
      expect({ where, rejected: row.failed.rejected, ssdError: row.failed.ssdError }).toEqual({ where, rejected: true, ssdError: true });
      if (row.kind === 'launch') {
        expect({ where, code: row.failed.code }).toEqual({ where, code: 'ERR_SSD_CUDA' });
        // a block of 2048 threads: cudaErrorInvalidConfiguration, or cudaErrorInvalidValue (CUDA 13 on an H100)
        expect(row.failed.message).toMatch(/cudaErrorInvalid(Configuration|Value)/);
      } else {
        expect({ where, code: row.failed.code }).toEqual({ where, code: 'ERR_SSD_OUT_OF_MEMORY' });
        expect(row.failed.message).toMatch(/cudaErrorMemoryAllocation/);
      }
      expect(row.failed.message).toMatch(/injected by SSD_KERNELS_FAULT_INJECT/);
      expect(row.failed.message).not.toMatch(/sticky|restart/);
      if (row.sameBitsAfter !== undefined) expect({ where, sameBitsAfter: row.sameBitsAfter }).toEqual({ where, sameBitsAfter: true });
      if (row.inUseBefore !== undefined) expect({ where, inUse: row.inUseAfter }).toEqual({ where, inUse: row.inUseBefore });
      if (row.stateUntouched !== undefined) expect({ where, stateUntouched: row.stateUntouched }).toEqual({ where, stateUntouched: true });
    }
  });
});

interface StickyResult {
  trapped: Attempt;
  later: Record<string, Attempt>;
  disposed: Attempt;
  abi: { status: number; message: string } | null;
  cpu: { sameBitsSync: boolean; sameBitsAsync: boolean; error: number; bound: number };
}

describeGpu("a sticky fault ('trap'): the context is lost, every later CUDA call fails at once, the CPU works", () => {
  test('in a child process', () => {
    const r = runChild<StickyResult>('sticky');
    expect(r.trapped.rejected).toBe(true);
    expect(r.trapped.code).toBe('ERR_SSD_CUDA');
    expect(r.trapped.message).toMatch(/cudaError\w+/);
    expect(r.trapped.message).toMatch(/the error is sticky: the CUDA context of device 0 is lost.*restart the process to use the GPU again/);
    const names = Object.keys(r.later);
    expect(names.length).toBeGreaterThanOrEqual(8);
    for (const [name, a] of Object.entries(r.later)) {
      expect({ name, rejected: a.rejected, code: a.code }).toEqual({ name, rejected: true, code: 'ERR_SSD_CUDA' });
      expect(a.message).toMatch(/^CUDA device 0 is unusable: an earlier error \(.*cudaError\w+.*\) was sticky .*restart the process to use the GPU again \(the CPU path still works\)$/);
      expect({ name, fast: a.ms < 2000 }).toEqual({ name, fast: true });
    }
    expect(r.disposed.rejected).toBe(false);
    if (r.abi === null) console.log('the C ABI part was skipped: test/abi-consumer is not built');
    else {
      expect(r.abi.status).toBe(4); // SSD_ERR_CUDA
      expect(r.abi.message).toMatch(/^CUDA device 0 is unusable: .*restart the process/);
    }
    expect(r.cpu.sameBitsSync).toBe(true);
    expect(r.cpu.sameBitsAsync).toBe(true);
    expect(r.cpu.error).toBeLessThanOrEqual(r.cpu.bound);
  });
});
