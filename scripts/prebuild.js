#!/usr/bin/env node
// `npm run prebuild` (also run by prepack, so `npm pack` and `npm publish` ship it): builds the
// redistributable addon with cmake-js (CPU path with run-time SIMD dispatch plus the CUDA kernels for
// sm_80/86/89/90a and compute_90 PTX, CUDA runtime static, SSD_PORTABLE: libstdc++ linked in and
// glibc symbol versions held at 2.28 or older) into build-prebuild/, and writes it, stripped, to
// prebuilds/linux-x64/ssd-kernels.node: prebuildify's layout, which node-gyp-build loads at install
// time and lib/native.ts at run time. It then checks the file (scripts/check-binary.js) and fails
// rather than ship a binary that breaks a promise. Needs cmake, a C++17 compiler and nvcc.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { checkBinary } = require('./check-binary');

const root = path.join(__dirname, '..');
const tuple = `${process.platform}-${process.arch}`;
const outDir = path.join(root, 'prebuilds', tuple);
const outFile = path.join(outDir, 'ssd-kernels.node');

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
}

function run(command, args) {
  process.stdout.write(`prebuild: ${[command, ...args].join(' ')}\n`);
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (r.error) fail(`${command}: ${r.error.message}`);
  if (r.status !== 0) fail(`${path.basename(command)} exited with ${r.status}`);
}

if (tuple !== 'linux-x64') fail(`the prebuilt binary is made on linux-x64; this is ${tuple}`);

let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {
  fail('cmake-js is not installed (it is a devDependency: run `npm ci` first)');
}

const t0 = Date.now();
run(process.execPath, [cmakeJs, 'build', '--out', 'build-prebuild', '--CDSSD_PORTABLE=ON', '--CDSSD_WITH_CUDA=ON', '--CDSSD_REQUIRE_CUDA=ON']);
const built = path.join(root, 'build-prebuild', 'Release', 'ssd_kernels.node');
if (!fs.existsSync(built)) fail(`cmake-js finished but ${built} is missing`);

fs.mkdirSync(outDir, { recursive: true });
for (const old of fs.readdirSync(outDir)) fs.rmSync(path.join(outDir, old));
const staged = `${outFile}.tmp`;
// Symbols for debugging stay in build-prebuild/; the shipped file needs none of them.
run('strip', ['--strip-unneeded', '-o', staged, built]);
fs.renameSync(staged, outFile);

const { report, failures } = checkBinary(outFile, { cuda: true });
process.stdout.write(report.map((l) => `  ${l}`).join('\n') + '\n');
if (failures.length > 0) {
  fs.rmSync(outFile);
  fail(`the binary breaks ${failures.length} promise(s), removed:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
}
process.stdout.write(`prebuild: wrote ${path.relative(root, outFile)} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
