// The smoke suite of the runtime matrix (scripts/runtime-matrix.sh), one file that Node.js, Bun and
// Deno all run, inside a project where the packed tarball was installed with no compiler on PATH:
//
//   node runtime-smoke.mjs node 22
//   bun runtime-smoke.mjs bun
//   deno run --allow-read --allow-env --allow-ffi runtime-smoke.mjs deno
//
// (the arguments: the runtime this must be, and for Node.js its major version). It checks that the
// prebuilt binary is the addon loaded, backends(), the known values of known-values.cjs (float64,
// written out by hand) through the CommonJS entry (require) and the ES module entry (import), the
// async ssd(), the decode step (ssdStep and ssdStepSync, token by token, giving the forward's y and
// final states) and a node:worker_threads Worker that loads the addon and computes the same values.
// Every check runs and prints ok or FAIL; the exit status is 1 if any failed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import util from 'node:util';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import * as esm from 'ssd-kernels';

const require = createRequire(import.meta.url);
const cjs = require('ssd-kernels');
const nativeApi = require('ssd-kernels/native');
const { cases, close, tensors, tokenInputs, initialState } = require('./known-values.cjs');

/** The runtime running this file, by its own globals. */
function runtime() {
  if (typeof globalThis.Bun !== 'undefined') return { name: 'bun', version: globalThis.Bun.version };
  if (typeof globalThis.Deno !== 'undefined') return { name: 'deno', version: globalThis.Deno.version.deno };
  return { name: 'node', version: process.versions.node };
}

/** Each case's forward through `api` (an entry point's exports): ssdSync, and ssd() on the CPU. */
async function forwards(api) {
  const out = {};
  for (const [name, c] of Object.entries(cases)) {
    const inputs = tensors(api.Tensor, c.inputs);
    const sync = api.ssdSync(inputs, { ...c.options, returnFinalStates: true });
    const async_ = await api.ssd(inputs, { ...c.options, returnFinalStates: true, device: 'cpu' });
    out[name] = {
      sync: { y: Array.from(sync.y.data), finalStates: Array.from(sync.finalStates.data) },
      async: { y: Array.from(async_.y.data), finalStates: Array.from(async_.finalStates.data) },
    };
  }
  return out;
}

function checkForwards(results, what) {
  for (const [name, c] of Object.entries(cases)) {
    const want = c.expected();
    for (const kind of ['sync', 'async']) {
      close(results[name][kind].y, want.y, `${what}: ${name}: ${kind} y`);
      close(results[name][kind].finalStates, want.finalStates, `${what}: ${name}: ${kind} finalStates`);
    }
  }
}

if (!isMainThread) {
  // The worker: load the package (and so the addon) here and send back what it computes.
  forwards(cjs).then(
    (results) => parentPort.postMessage({ addon: nativeApi.addonPath(), isa: cjs.backends().cpu.isa, results }),
    (err) => parentPort.postMessage({ error: String((err && err.stack) || err) }),
  );
} else {
  await main();
}

async function main() {
  const [wantName, wantMajor] = process.argv.slice(2);
  const rt = runtime();
  const packageDir = path.dirname(require.resolve('ssd-kernels/package.json'));
  let failures = 0;
  const check = async (name, fn) => {
    try {
      const note = await fn();
      console.log(`  ok   ${name}${note ? `: ${note}` : ''}`);
    } catch (err) {
      failures++;
      console.log(`  FAIL ${name}: ${String((err && err.stack) || err)}`);
    }
  };

  console.log(`runtime-smoke under ${rt.name} ${rt.version}`);
  await check('the runtime is the one asked for', () => {
    assert.equal(rt.name, wantName);
    if (wantMajor) assert.equal(rt.version.split('.')[0], wantMajor, 'major version');
    return `${rt.name} ${rt.version}${rt.name === 'node' ? '' : ` (node:process says Node.js ${process.versions.node})`}`;
  });

  await check('the addon is the prebuilt binary', () => {
    const loaded = fs.realpathSync(nativeApi.addonPath());
    assert.equal(loaded, fs.realpathSync(path.join(packageDir, 'prebuilds', 'linux-x64', 'ssd-kernels.node')));
    assert.ok(!fs.existsSync(path.join(packageDir, 'build')), 'installing must not have built anything');
    return path.relative(packageDir, loaded);
  });

  await check('backends()', () => {
    const b = esm.backends();
    assert.equal(b.version, require('ssd-kernels/package.json').version);
    assert.ok(['avx512', 'avx2', 'scalar'].includes(b.cpu.isa), `cpu.isa ${b.cpu.isa}`);
    assert.ok(b.cpu.threads >= 1);
    assert.equal(b.cuda.compiled, true, 'the prebuilt binary contains the CUDA kernels');
    if (!b.cuda.available) assert.ok(b.cuda.reason.length > 0, 'an unavailable CUDA says why');
    return `version ${b.version}, isa ${b.cpu.isa}, ${b.cpu.threads} threads, CUDA compiled in, ${b.cuda.available ? 'available' : 'unavailable here'}`;
  });

  await check('CommonJS entry (require): ssdSync and ssd() give the known values', async () => {
    checkForwards(await forwards(cjs), 'require');
  });

  await check('ES module entry (import): ssdSync and ssd() give the known values', async () => {
    assert.equal(typeof esm.ssdStep, 'function');
    assert.equal(esm.version, cjs.version);
    checkForwards(await forwards(esm), 'import');
  });

  await check('async ssd() with device auto', async () => {
    // With no usable GPU, auto runs on the CPU; with one, auto would run on it: ask for the CPU then.
    const device = esm.backends().cuda.available ? 'cpu' : 'auto';
    for (const [name, c] of Object.entries(cases)) {
      const want = c.expected();
      const pending = esm.ssd(tensors(esm.Tensor, c.inputs), { ...c.options, returnFinalStates: true, device });
      assert.ok(pending instanceof Promise, 'ssd() returns a Promise');
      const out = await pending;
      close(out.y.data, want.y, `${name}: y`);
      close(out.finalStates.data, want.finalStates, `${name}: finalStates`);
    }
    return `device ${device}`;
  });

  await check('ssdStep and ssdStepSync, token by token, give the forward\'s y and final states', async () => {
    for (const [name, c] of Object.entries(cases)) {
      const want = c.expected();
      const seqlen = c.inputs.x.dims[1];
      const perToken = want.y.length / seqlen;
      const start = initialState(c.inputs);
      for (const mode of ['async', 'sync']) {
        const state = new esm.Tensor('float32', Float32Array.from(start.values), start.dims);
        for (let t = 0; t < seqlen; t++) {
          const inputs = tensors(esm.Tensor, tokenInputs(c.inputs, t));
          const options = { dtSoftplus: Boolean(c.options.dtSoftplus) };
          const { y } = mode === 'async' ? await esm.ssdStep(state, inputs, options) : esm.ssdStepSync(state, inputs, options);
          close(y.data, want.y.slice(t * perToken, (t + 1) * perToken), `${name}: ${mode} step ${t} y`);
        }
        close(state.data, want.finalStates, `${name}: ${mode} state after ${seqlen} steps`);
      }
    }
  });

  await check('a worker_threads Worker loads the addon and gives the known values', async () => {
    const worker = new Worker(new URL(import.meta.url));
    const message = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer from the worker in 60 s')), 60000);
      worker.once('message', (m) => { clearTimeout(timer); resolve(m); });
      worker.once('error', (e) => { clearTimeout(timer); reject(e); });
      worker.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the worker exited (${code}) without answering`)); });
    });
    await worker.terminate();
    if (message.error) throw new Error(`in the worker: ${message.error}`);
    assert.equal(fs.realpathSync(message.addon), fs.realpathSync(nativeApi.addonPath()), 'the worker loaded the same file');
    checkForwards(message.results, 'worker');
    return `node:worker_threads, isa ${message.isa}`;
  });

  await check('the C ABI pieces: includeDir and getNativeApi()', () => {
    assert.ok(fs.existsSync(path.join(nativeApi.includeDir, 'ssd_kernels.h')), 'includeDir holds ssd_kernels.h');
    const api = nativeApi.getNativeApi();
    if (typeof util.types.isExternal === 'function') {
      assert.ok(util.types.isExternal(api), `getNativeApi() returns an External (got ${Object.prototype.toString.call(api)})`);
      return 'an External (util.types.isExternal)';
    }
    // Deno's node:util has no types.isExternal: check what an External looks like from JavaScript.
    assert.ok(typeof api === 'object' && api !== null && Object.getPrototypeOf(api) === null && Object.keys(api).length === 0, 'getNativeApi() returns an External');
    return 'an External by its shape (this runtime has no util.types.isExternal)';
  });

  console.log(`runtime-smoke: ${failures === 0 ? 'PASS' : `FAIL (${failures} check(s))`} under ${rt.name} ${rt.version}`);
  process.exit(failures === 0 ? 0 : 1);
}
