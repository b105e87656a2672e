#!/usr/bin/env node
// Lists sources for binding.gyp: `host` (csrc/binding and csrc/core, the bindings, the parameter
// contract and the dispatcher), or the csrc/cpu sources by instruction set: `avx512`, `avx2` or
// `baseline` (every other .cpp). Paths are relative to the package root, one per line.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const kind = process.argv[2];
const list = (dir) =>
  fs
    .readdirSync(path.join(__dirname, '..', 'csrc', dir))
    .filter((f) => f.endsWith('.cpp'))
    .sort()
    .map((f) => `csrc/${dir}/${f}`);
const cpu = () => list('cpu');
const pick = {
  host: () => [...list('binding'), ...list('core')],
  avx512: () => cpu().filter((f) => f.endsWith('_avx512.cpp')),
  avx2: () => cpu().filter((f) => f.endsWith('_avx2.cpp')),
  baseline: () => cpu().filter((f) => !f.endsWith('_avx512.cpp') && !f.endsWith('_avx2.cpp')),
}[kind];
if (!pick) {
  process.stderr.write('usage: gyp-sources.js host|avx512|avx2|baseline\n');
  process.exit(2);
}
process.stdout.write(pick().join('\n'));
