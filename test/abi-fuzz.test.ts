/**
 * The C ABI fuzz, host memory (blocks and the catalogue of malformations in test/abi-fuzz-blocks.ts;
 * the example consumer, test/abi-consumer, passes raw block bytes to the table):
 *
 *   - valid blocks of random sizes, dtypes, options and strided views (any order of the outer
 *     dimensions, padded rows, inputs broadcast with stride 0) run, give the bits of the TypeScript
 *     API on the same logical tensors, and leave the gaps of strided outputs alone;
 *   - every malformed block (sizes out of range or overflowing, chunk sizes, NULL pointers, unknown
 *     dtype codes, NaN or crossed dt limits, negative, overflowing or overlapping strides,
 *     misaligned pointers, excluded combinations, bad offsets and state indices, D_per_channel not
 *     0 or 1) is refused with SSD_ERR_INVALID_ARGUMENT and a message naming what is wrong, writes
 *     nothing, and crashes nothing: each malformation on a block with every option, then random
 *     combinations of them on random blocks; a NULL block and unknown memory kinds too.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { backends, ssdBackwardSync, ssdStepSync, ssdSync, type SsdBackwardOptions, type SsdGrads, type Tensor } from '../lib/index';
import { getNativeApi } from '../lib/native-api';
import {
  CONTIGUOUS,
  SSD_ERR_INVALID_ARGUMENT,
  SSD_ERR_UNSUPPORTED,
  SSD_OK,
  abiCase,
  buildScanBlock,
  buildStepBlock,
  gapsIntact,
  gather,
  mutationsOf,
  outputsUntouched,
  sameElements,
  type AbiCase,
  type Built,
  type Entry,
  type Layouts,
  type Outcome,
  type RawConsumer,
} from './abi-fuzz-blocks';
import { fuzzTimeout, runProperty } from './fuzz-cases';

const FILE = 'test/abi-fuzz.test.ts';
const consumerDir = path.join(__dirname, 'abi-consumer');
const consumerFile = path.join(consumerDir, 'build', 'Release', 'abi_consumer.node');

let consumer: RawConsumer;
let layouts: Layouts;

beforeAll(() => {
  // test/abi.test.ts builds the consumer too; rebuild only when its sources are newer
  const newest = Math.max(...['consumer.c', 'binding.gyp'].map((f) => fs.statSync(path.join(consumerDir, f)).mtimeMs), fs.statSync(path.join(__dirname, '..', 'include', 'ssd_kernels.h')).mtimeMs);
  if (!fs.existsSync(consumerFile) || fs.statSync(consumerFile).mtimeMs < newest) {
    const r = spawnSync(process.execPath, [path.join(consumerDir, 'build.js')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building test/abi-consumer failed:\n${r.stdout}${r.stderr}`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  consumer = require(consumerFile) as RawConsumer;
  layouts = consumer.layout();
}, 120000);

function call(built: Built, memory = 0): Outcome {
  return consumer.callRaw(getNativeApi(), built.entry, built.block.bytes, memory, null);
}

/** Throws unless `got` (an output view's logical elements or a plain buffer) has the bits of `want`. */
function expectBits(name: string, got: ArrayLike<number>, want: Tensor | undefined): void {
  if (want === undefined) throw new Error(`${name}: the TypeScript API returned nothing to compare with`);
  if (!sameElements(got, want.data as ArrayLike<number>)) throw new Error(`${name}: not the bits of the TypeScript API's result`);
}

function expectGaps(built: Built): void {
  for (const bv of Object.values(built.views)) {
    if (!bv.output) continue;
    const before = built.outputs.find((o) => o.name === bv.field)!.before;
    if (!gapsIntact(bv, before)) throw new Error(`${bv.field}: an element between the rows of the strided output was written`);
  }
}

function expectOk(r: Outcome): void {
  if (r.status !== SSD_OK) throw new Error(`status ${r.status} (${r.message}) for a valid block`);
}

/** A valid block runs and gives the TypeScript API's bits (same CPU kernels, same logical tensors). */
function checkValid(built: Built): void {
  expectOk(call(built));
  expectGaps(built);
  const v = built.views;
  if (built.entry === 'forward') {
    const want = ssdSync(built.inputs!, { ...built.options!, device: 'cpu' });
    expectBits('y', gather(v.y.view), want.y);
    if (v.y_ungated) expectBits('y_ungated', gather(v.y_ungated.view), want.yUngated);
    if (built.plain.final_states) expectBits('final_states', built.plain.final_states, want.finalStates);
    if (built.plain.varlen_states) expectBits('varlen_states', built.plain.varlen_states, want.varlenStates);
  } else if (built.entry === 'backward') {
    const grads: SsdGrads = ssdBackwardSync(built.inputs!, { dy: built.dy!, ...(built.dFinalStates ? { dFinalStates: built.dFinalStates } : {}) }, { ...built.options!, device: 'cpu' } as SsdBackwardOptions);
    for (const [name, key] of [['dx', 'dx'], ['ddt', 'ddt'], ['dB', 'dB'], ['dC', 'dC'], ['dz', 'dz']] as const) if (v[name]) expectBits(name, gather(v[name].view), grads[key]);
    for (const [field, key] of [['dA', 'dA'], ['dD', 'dD'], ['d_dt_bias', 'dDtBias'], ['d_initial_states', 'dInitialStates']] as const) {
      if (built.plain[field]) expectBits(field, built.plain[field], grads[key]);
    }
  } else {
    const state = built.stepState!;
    const { y } = ssdStepSync(state, built.stepInputs!, { ...built.stepOptions!, device: 'cpu' });
    expectBits('y', gather(v.y.view), y);
    expectBits('state', built.plain.state, state);
  }
}

function build(c: AbiCase, entry: Entry): Built {
  return entry === 'step' ? buildStepBlock(consumer, layouts, c) : buildScanBlock(consumer, layouts, c, entry);
}

describe('valid blocks: random sizes, dtypes, options and strided views give the bits of the TypeScript API', () => {
  test.each(['forward', 'backward', 'step'] as const)(
    '%s',
    async (entry) => {
      await runProperty(`abi valid ${entry}`, FILE, abiCase, async (c) => checkValid(build(c, entry)), 400);
    },
    fuzzTimeout(120000),
  );
});

/** Applies `mutations` (by index into the block's catalogue) and checks the refusal; returns a problem or null. */
function refused(built: Built, picks: number[], memory = 0): string | null {
  const all = mutationsOf(built);
  const chosen = [...new Set(picks.map((i) => i % all.length))].map((i) => all[i]);
  for (const mu of chosen) mu.apply();
  const r = call(built, memory);
  const names = chosen.map((mu) => mu.name).join(' + ');
  if (r.status === SSD_OK) return `${built.entry} with ${names}: accepted (status 0)`;
  if (r.message === '') return `${built.entry} with ${names}: status ${r.status} without a message`;
  if (chosen.length === 1) {
    if (r.status !== chosen[0].status) return `${built.entry} with ${names}: status ${r.status} (${r.message}), expected ${chosen[0].status}`;
    if (!chosen[0].message.test(r.message)) return `${built.entry} with ${names}: message '${r.message}' does not match ${chosen[0].message}`;
  } else if (r.status !== SSD_ERR_INVALID_ARGUMENT) {
    return `${built.entry} with ${names}: status ${r.status} (${r.message}), expected ${SSD_ERR_INVALID_ARGUMENT}`;
  }
  const written = outputsUntouched(built);
  if (written !== null) return `${built.entry} with ${names}: refused (${r.message}) but ${written} was written`;
  return null;
}

/** Blocks with every option on (for each entry), the bases of the exhaustive pass. */
function richCases(entry: Entry): AbiCase[] {
  const layout = { perm: 3, pads: [1, 2, 0, 1], broadcast: -1 };
  const layouts = Object.fromEntries(['x', 'dt', 'B', 'C', 'z', 'y', 'y_ungated', 'seq_idx', 'dy', 'dx', 'ddt', 'dB', 'dC', 'dz'].map((n) => [n, n === 'dt' ? CONTIGUOUS : layout]));
  const base: AbiCase = {
    batch: 2, seqlen: 9, ngroups: 2, headsPerGroup: 2, headdim: 3, dstate: 5, chunkSize: 16, dtype: 'float32', D: 'channel', z: true, dtBias: true,
    initialStates: true, seqIdx: true, cuSeqlens: false, finalStates: true, yUngated: true, dtSoftplus: true, dtLimit: true,
    stateIndices: { extraRows: 2 }, stateType: 'float32', layouts, seed: 11,
  };
  const cases = [base, { ...base, dtype: 'bfloat16' as const, stateType: 'bfloat16' as const, D: 'head' as const, z: false, stateIndices: null, seed: 12 }];
  if (entry !== 'step') cases.push({ ...base, cuSeqlens: true, dtype: 'float16', seed: 13 });
  if (entry === 'backward') cases.push({ ...base, batch: 1, seqIdx: false, initialStates: false, D: 'none', dtype: 'float16', seed: 14 });
  return cases;
}

describe('malformed blocks are refused with a status and a message, and nothing is written', () => {
  test.each(['forward', 'backward', 'step'] as const)('%s: each malformation of blocks with every option', (entry) => {
    const problems: string[] = [];
    let count = 0;
    for (const c of richCases(entry)) {
      const total = mutationsOf(build(c, entry)).length;
      for (let i = 0; i < total; i++) {
        const problem = refused(build(c, entry), [i]);
        count++;
        if (problem) problems.push(problem);
      }
    }
    if (problems.length > 0) throw new Error(`${problems.length} of ${count} malformed blocks were not refused as they should be:\n${problems.join('\n')}`);
    expect(count).toBeGreaterThan(100);
  });

  test.each(['forward', 'backward', 'step'] as const)(
    '%s: random combinations of malformations of random blocks',
    async (entry) => {
      const arbitrary = fc.tuple(abiCase, fc.array(fc.nat(), { minLength: 1, maxLength: 3 }));
      await runProperty(
        `abi malformed ${entry}`,
        FILE,
        arbitrary,
        async ([c, picks]) => {
          const problem = refused(build(c, entry), picks);
          if (problem) throw new Error(problem);
        },
        600,
      );
    },
    fuzzTimeout(120000),
  );

  test.each(['forward', 'backward', 'step'] as const)('%s: a NULL block, unknown memory kinds, device memory where CUDA cannot run', (entry) => {
    const api = getNativeApi();
    const nullBlock = consumer.callRaw(api, entry, null, 0, null);
    expect(nullBlock.status).toBe(SSD_ERR_INVALID_ARGUMENT);
    expect(nullBlock.message).toMatch(/^params: expected a pointer to an Ssd\w+ block but received NULL$/);
    for (const memory of [2, -1, 1000]) {
      const built = build(fc.sample(abiCase, { numRuns: 1, seed: memory + 7 })[0], entry);
      const r = call(built, memory);
      expect(r.status).toBe(SSD_ERR_INVALID_ARGUMENT);
      expect(r.message).toBe(`memory: expected SSD_MEMORY_HOST (0) or SSD_MEMORY_CUDA (1) but received ${memory}`);
      expect(outputsUntouched(built)).toBeNull();
    }
    const cuda = backends().cuda;
    if (cuda.available) {
      console.log('CUDA is available here: device memory is fuzzed in test/cuda/abi-fuzz.cuda.test.ts');
      return;
    }
    const built = build(fc.sample(abiCase, { numRuns: 1, seed: 5 })[0], entry);
    const r = call(built, 1);
    expect(r.status).toBe(SSD_ERR_UNSUPPORTED);
    expect(r.message).toBe(`CUDA is unavailable: ${cuda.reason}`);
    expect(outputsUntouched(built)).toBeNull();
  });
});
