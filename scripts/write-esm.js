#!/usr/bin/env node
// Writes dist/lib/index.mjs, an ES module that re-exports the CommonJS entry's named exports,
// so that `import { ssd } from 'ssd-kernels'` works from ESM.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist', 'lib');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const body =
  "import cjs from './index.js';\n" +
  names.map((n) => `export const ${n} = cjs.${n};`).join('\n') +
  '\nexport default cjs;\n';
fs.writeFileSync(path.join(dist, 'index.mjs'), body);
fs.writeFileSync(path.join(dist, 'index.d.mts'), "export * from './index.js';\n");
