/**
 * The CUDA fault-injection switch (csrc/device/device.h, "Fault injection"; exercised on a GPU by
 * test/cuda/fault.cuda.test.ts) cannot be armed by accident: the addon's test-only cudaInjectFault
 * refuses unless the process started with SSD_KERNELS_FAULT_INJECT=1 exactly, and names the kinds
 * it takes. Child processes, because the native code reads the real environment once.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

function tryArm(env: NodeJS.ProcessEnv, kind: string): { code?: string; message?: string; armed: boolean; cuda: boolean } {
  const script = `
    const { native } = require('./dist/lib/native.js');
    const out = { armed: false, cuda: native().backends().cuda.available };
    try { native().cudaInjectFault(${JSON.stringify(kind)}); out.armed = true; } catch (e) { out.code = e.code; out.message = e.message; }
    console.log(JSON.stringify(out));`;
  const childEnv = { ...env };
  const r = spawnSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8', env: childEnv });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout) as { code?: string; message?: string; armed: boolean; cuda: boolean };
}

const base = { ...process.env };
delete base.SSD_KERNELS_FAULT_INJECT;

test.each([
  ['unset', base],
  ["'0'", { ...base, SSD_KERNELS_FAULT_INJECT: '0' }],
  ["'yes'", { ...base, SSD_KERNELS_FAULT_INJECT: 'yes' }],
  ["'trap'", { ...base, SSD_KERNELS_FAULT_INJECT: 'trap' }],
])('SSD_KERNELS_FAULT_INJECT %s: nothing can be armed', (_name, env) => {
  for (const kind of ['trap', 'launch', 'alloc']) {
    const r = tryArm(env, kind);
    expect(r.armed).toBe(false);
    expect(r.code).toBe('ERR_SSD_INVALID_ARGUMENT');
    expect(r.message).toBe('fault injection is off: it is for tests, and only a process started with SSD_KERNELS_FAULT_INJECT=1 can arm it');
  }
});

test('SSD_KERNELS_FAULT_INJECT=1: the three kinds arm where CUDA runs, anything else is refused by name', () => {
  const env = { ...base, SSD_KERNELS_FAULT_INJECT: '1' };
  const unknown = tryArm(env, 'segfault');
  const trap = tryArm(env, 'trap');
  if (trap.cuda) {
    expect(unknown.code).toBe('ERR_SSD_INVALID_ARGUMENT');
    expect(unknown.message).toBe("fault injection: expected 'trap', 'launch' or 'alloc' but received 'segfault'");
    for (const kind of ['trap', 'launch', 'alloc']) expect(tryArm(env, kind).armed).toBe(true);
  } else {
    // without CUDA there is nothing to inject into
    expect(trap.armed).toBe(false);
    expect(trap.code).toBe('ERR_SSD_CUDA');
    expect(trap.message).toMatch(/^CUDA is unavailable: /);
  }
});
