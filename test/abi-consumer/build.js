#!/usr/bin/env node
// Builds the example consumer (node-gyp rebuild in this folder). node-gyp is npm's own copy (npm
// hands scripts its path in npm_config_node_gyp) unless one is installed; the Node headers come
// from npm's nodedir setting or, where present, the headers next to this Node binary, else
// node-gyp downloads them.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

function nodeGyp() {
  if (process.env.npm_config_node_gyp && fs.existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // not installed: npm's bundled copy, next to this Node
  }
  const bundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (fs.existsSync(bundled)) return bundled;
  throw new Error('node-gyp not found: run this through npm, or install node-gyp');
}

function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [`--nodedir=${process.env.npm_config_nodedir}`];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) return [`--nodedir=${prefix}`];
  return [];
}

const r = spawnSync(process.execPath, [nodeGyp(), 'rebuild', ...nodedirArgs()], { cwd: __dirname, encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write(r.stdout + r.stderr);
  process.exit(r.status ?? 1);
}
process.stdout.write(`built ${path.join(__dirname, 'build', 'Release', 'abi_consumer.node')}\n`);
