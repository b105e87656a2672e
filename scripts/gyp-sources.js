#!/usr/bin/env node
// Lists csrc/cpu sources for binding.gyp by instruction set: `avx512`, `avx2` or `baseline`
// (every other .cpp). Paths are relative to the package root, one per line.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const kind = process.argv[2];
const dir = path.join(__dirname, '..', 'csrc', 'cpu');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpp')).sort();
const pick = {
  avx512: (f) => f.endsWith('_avx512.cpp'),
  avx2: (f) => f.endsWith('_avx2.cpp'),
  baseline: (f) => !f.endsWith('_avx512.cpp') && !f.endsWith('_avx2.cpp'),
}[kind];
if (!pick) {
  process.stderr.write('usage: gyp-sources.js avx512|avx2|baseline\n');
  process.exit(2);
}
process.stdout.write(files.filter(pick).map((f) => `csrc/cpu/${f}`).join('\n'));
