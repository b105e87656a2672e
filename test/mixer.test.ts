/**
 * The Mamba-2 mixer of examples/mamba2-mixer.ts: prefill of the first k tokens (ssd()) then decoding
 * the rest token by token (ssdStep(), the conv and SSM states carried) equals one forward over the
 * whole sequence, for several k, for a prefill in two parts and for decoding from an empty cache;
 * both carried states matter (dropping either changes the output); and the compiled example runs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor } from '../lib/index';
import { Mamba2Mixer, type MixerCache } from '../examples/mamba2-mixer';
import { CPU_BOUND, MIXER_EXAMPLE_MAX_ABS } from '../lib/tolerances';
import { Random, allFinite, l2, relativeL2 } from './reference';

const mixer = new Mamba2Mixer({ dModel: 32, headdim: 8, dState: 16, ngroups: 2 }, 3);
const batch = 2;
const L = 40;
const u = new Random(5).normals(batch * L * mixer.dModel); // (batch, L, dModel)

/** Tokens [from, to) of every batch entry of a (batch, L, dModel) array. */
function tokens(a: Float32Array, from: number, to: number): Float32Array {
  const d = mixer.dModel;
  const out = new Float32Array(batch * (to - from) * d);
  for (let b = 0; b < batch; b++) out.set(a.subarray((b * L + from) * d, (b * L + to) * d), b * (to - from) * d);
  return out;
}

/** Decodes tokens [from, L) one at a time from `cache` (advanced in place); the outputs laid out as (batch, L − from, dModel). */
async function decode(cache: MixerCache, from: number): Promise<Float32Array> {
  const d = mixer.dModel;
  const out = new Float32Array(batch * (L - from) * d);
  for (let t = from; t < L; t++) {
    const y = await mixer.step(tokens(u, t, t + 1), batch, cache);
    for (let b = 0; b < batch; b++) out.set(y.subarray(b * d, (b + 1) * d), (b * (L - from) + t - from) * d);
  }
  return out;
}

/** Concatenates (batch, k, d) and (batch, L − k, d) along the positions. */
function join(first: Float32Array, k: number, rest: Float32Array): Float32Array {
  const d = mixer.dModel;
  const out = new Float32Array(batch * L * d);
  for (let b = 0; b < batch; b++) {
    out.set(first.subarray(b * k * d, (b + 1) * k * d), b * L * d);
    out.set(rest.subarray(b * (L - k) * d, (b + 1) * (L - k) * d), (b * L + k) * d);
  }
  return out;
}

function expectClose(got: Float32Array, want: Float32Array, bound = CPU_BOUND): void {
  expect(got.length).toBe(want.length);
  expect(allFinite(got)).toBe(true);
  expect(l2(want)).toBeGreaterThan(0);
  expect(l2(got)).toBeGreaterThan(0);
  expect(relativeL2(got, want)).toBeLessThan(bound);
}

let whole: { out: Float32Array; cache: MixerCache };
beforeAll(async () => {
  whole = await mixer.forward(u, batch, L);
});

describe('Mamba-2 mixer (examples/mamba2-mixer.ts)', () => {
  test('sizes: d_inner, heads, conv channels and in_proj outputs as mamba_ssm lays them out', () => {
    expect(mixer.dInner).toBe(64);
    expect(mixer.nheads).toBe(8);
    expect(mixer.convDim).toBe(64 + 2 * 2 * 16);
    expect(mixer.dInProj).toBe(2 * 64 + 2 * 2 * 16 + 8);
    expect(whole.out.length).toBe(batch * L * mixer.dModel);
    expect(whole.cache.ssm.dims).toEqual([batch, 8, 8, 16]);
    expect(whole.cache.conv.length).toBe(batch * 3 * mixer.convDim);
  });

  test.each([1, 3, 4, 17, 39])('prefill %i tokens with ssd(), decode the rest with ssdStep(): one forward', async (k) => {
    const prefill = await mixer.forward(tokens(u, 0, k), batch, k);
    expectClose(prefill.out, tokens(whole.out, 0, k));
    const rest = await decode(prefill.cache, k);
    expectClose(join(prefill.out, k, rest), whole.out);
    // the carried caches end where one forward's do
    expectClose(prefill.cache.ssm.data as Float32Array, whole.cache.ssm.data as Float32Array);
    expect(prefill.cache.conv).toEqual(whole.cache.conv);
  });

  test('decoding every token from an empty cache, and a prefill in two parts, give one forward', async () => {
    const cache = mixer.emptyCache(batch);
    expectClose(await decode(cache, 0), whole.out);
    const first = await mixer.forward(tokens(u, 0, 2), batch, 2); // shorter than the conv's 3 past inputs
    const second = await mixer.forward(tokens(u, 2, 23), batch, 21, first.cache);
    const third = await mixer.forward(tokens(u, 23, L), batch, L - 23, second.cache);
    const out = new Float32Array(batch * L * mixer.dModel);
    const d = mixer.dModel;
    for (let b = 0; b < batch; b++) {
      out.set(first.out.subarray(b * 2 * d, (b + 1) * 2 * d), b * L * d);
      out.set(second.out.subarray(b * 21 * d, (b + 1) * 21 * d), (b * L + 2) * d);
      out.set(third.out.subarray(b * (L - 23) * d, (b + 1) * (L - 23) * d), (b * L + 23) * d);
    }
    expectClose(out, whole.out);
  });

  test('both carried states matter: decoding without the SSM state or the conv inputs goes wrong', async () => {
    const k = 20;
    const want = tokens(whole.out, k, L);
    const prefill = await mixer.forward(tokens(u, 0, k), batch, k);
    const noSsm: MixerCache = { conv: prefill.cache.conv.slice(), ssm: new Tensor('float32', new Float32Array(prefill.cache.ssm.size), prefill.cache.ssm.dims) };
    expect(relativeL2(await decode(noSsm, k), want)).toBeGreaterThan(1e-2);
    const noConv: MixerCache = { conv: new Float32Array(prefill.cache.conv.length), ssm: new Tensor('float32', (prefill.cache.ssm.data as Float32Array).slice(), prefill.cache.ssm.dims) };
    expect(relativeL2(await decode(noConv, k), want)).toBeGreaterThan(1e-2);
  });

  test('causal: a change at position 10 leaves positions 0..9 alone and reaches the last position (beyond the conv)', async () => {
    const changed = u.slice();
    for (let i = 0; i < mixer.dModel; i++) changed[10 * mixer.dModel + i] += 1;
    const out = (await mixer.forward(changed, batch, L)).out;
    const d = mixer.dModel;
    expect(out.subarray(0, 10 * d)).toEqual(whole.out.subarray(0, 10 * d));
    const last = (a: Float32Array): Float32Array => a.subarray((L - 1) * d, L * d);
    expect(relativeL2(last(out), last(whole.out))).toBeGreaterThan(1e-6);
  });

  test('the compiled example runs and finds decoding equal to one forward', () => {
    const script = path.join(__dirname, '..', 'dist', 'examples', 'mamba2-mixer.js');
    expect(fs.existsSync(script)).toBe(true);
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 60000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/prefill 24 tokens with ssd\(\), decode 8 with ssdStep\(\)/);
    const worst = Number(/one forward over all 32 tokens\| = (\S+)/.exec(r.stdout)![1]);
    expect(worst).toBeLessThan(MIXER_EXAMPLE_MAX_ABS);
  });
});
