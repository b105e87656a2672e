/** Shared assertions for tests that compare an implementation with the float64 reference. */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { backends, type FloatType, type SsdOptions, type Tensor } from '../lib/index';
import { CPU_BOUND, ROUNDING_ALLOWANCE } from '../lib/tolerances';
import { nativeOptions, readOptions, type NativeOptions, type OptionName } from '../lib/validate';
import { allFinite, l2, relativeL2, roundingError, type ExampleOptions, type RefOutputs } from './reference';

/**
 * Checks y (and finalStates when given) against the reference: finite, nonzero, and within the fp32
 * bound; a 16-bit y may in addition differ by twice the error of rounding the reference itself.
 * Returns the errors for reporting.
 */
export function expectMatchesReference(y: Tensor, expected: RefOutputs, finalStates?: Tensor): { y: number; states?: number } {
  const yValues = y.toFloat32();
  expect(allFinite(yValues)).toBe(true);
  expect(l2(yValues)).toBeGreaterThan(0);
  expect(l2(expected.y)).toBeGreaterThan(0);
  const yError = relativeL2(yValues, expected.y);
  const yBound = CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(y.type as FloatType, expected.y);
  expect(yError).toBeLessThanOrEqual(yBound);
  if (!finalStates) return { y: yError };
  const states = finalStates.toFloat32();
  expect(finalStates.type).toBe('float32');
  expect(allFinite(states)).toBe(true);
  expect(l2(states)).toBeGreaterThan(0);
  const statesError = relativeL2(states, expected.finalStates);
  expect(statesError).toBeLessThanOrEqual(CPU_BOUND);
  return { y: yError, states: statesError };
}

/** Bitwise equality of two tensors' data. */
export function sameBits(a: Tensor, b: Tensor): boolean {
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * Every combination of the options (D none / per head / per channel, z, dtBias, dtSoftplus, a dtLimit
 * that clamps, initialStates, seqIdx) for each dtype, with chunk size 16 and sequence starts inside
 * and at the edge of a chunk; `finalStates` both ways when `varyFinalStates`, else always on.
 */
export function optionCombinations(dtypes: readonly FloatType[], varyFinalStates: boolean): [string, ExampleOptions, SsdOptions][] {
  const combos: [string, ExampleOptions, SsdOptions][] = [];
  const flags = [false, true];
  for (const dtype of dtypes) {
    for (const D of ['none', 'head', 'channel'] as const) {
      for (const z of flags) {
        for (const dtBias of flags) {
          for (const dtSoftplus of flags) {
            for (const clamp of flags) {
              for (const initialStates of flags) {
                for (const returnFinalStates of varyFinalStates ? flags : [true]) {
                  for (const seq of flags) {
                    const example: ExampleOptions = { dtype, D, z, dtBias, initialStates, positiveDt: !dtSoftplus };
                    if (seq) example.seqStarts = [5, 16, 30];
                    const options: SsdOptions = { dtSoftplus, returnFinalStates, chunkSize: 16 };
                    if (clamp) options.dtLimit = [0.01, 0.04];
                    const name = `${dtype} D=${D} z=${z} dtBias=${dtBias} softplus=${dtSoftplus} clamp=${clamp} init=${initialStates} final=${returnFinalStates} seqIdx=${seq}`;
                    combos.push([name, example, options]);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return combos;
}

/** The instruction sets of the CPU path, lowest first. */
/**
 * The addon's option fields of a call of the options `names` at their defaults (lib/validate.ts,
 * OPTIONS), for the argument objects a test writes by hand to bypass the TypeScript checks.
 */
export function defaultNativeOptions<N extends OptionName>(names: readonly N[]): NativeOptions<N> {
  return nativeOptions(readOptions({}, names), names);
}

export const ISA_ORDER: readonly string[] = ['scalar', 'avx2', 'avx512'];

/**
 * Runs `script` (CommonJS, from the package root, on the compiled package in dist/) in a child process
 * with SSD_KERNELS_CPU_ISA=isa: the native code reads it from the real environment, which jest's
 * sandboxed process.env does not reach. The script prints JSON with `isa` and `best` (backends().cpu);
 * checks that it ran cleanly on `isa`, or on the best this CPU has below it, and returns the JSON.
 */
export function runOnIsa<T>(script: string, isa: string): T {
  const r = spawnSync(process.execPath, ['-e', script], {
    cwd: path.join(__dirname, '..'),
    encoding: 'utf8',
    env: { ...process.env, SSD_KERNELS_CPU_ISA: isa },
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as T & { isa: string; best: string };
  const expectedIsa = ISA_ORDER.indexOf(isa) <= ISA_ORDER.indexOf(out.best) ? isa : out.best;
  if (expectedIsa !== isa) console.log(`instruction set ${isa}: not supported by this CPU, ran ${expectedIsa} instead`);
  expect(out.isa).toBe(expectedIsa);
  return out;
}

/** How many event-loop turns (setImmediate callbacks) ran while `pending` was unsettled. */
export async function eventLoopTurnsDuring(pending: Promise<unknown>): Promise<number> {
  let turns = 0;
  let settled = false;
  const spin = (): void => {
    if (settled) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  await pending.finally(() => (settled = true));
  return turns;
}

/**
 * The GPU suite's preamble for one test file: whether CUDA is available, `describe` or `describe.skip`
 * for its GPU tests, and a test that says why they were skipped (`what` names them in that line).
 */
export function gpuSuite(what: string): { cuda: ReturnType<typeof backends>['cuda']; gpu: boolean; describeGpu: jest.Describe } {
  const cuda = backends().cuda;
  const gpu = cuda.available;
  test('CUDA availability is reported (GPU tests run only where it is available)', () => {
    if (!gpu) {
      console.log(`${what} skipped: CUDA is unavailable here (${cuda.reason})`);
      expect(cuda.reason.length).toBeGreaterThan(0);
    } else {
      expect(cuda.devices).toBeGreaterThan(0);
    }
  });
  return { cuda, gpu, describeGpu: gpu ? describe : describe.skip };
}
