#!/usr/bin/env node
// Checks a built ssd_kernels.node against what the prebuilt binary promises, reading the ELF file
// itself (no binutils needed):
//   - no link-time dependency on libcudart, libcuda (the runtime is static, the driver is loaded at
//     run time) or libstdc++ (linked in);
//   - the newest GLIBC_ symbol version it needs is no newer than --max-glibc (default 2.28, Node 20's
//     own floor), and it needs no GLIBCXX_/CXXABI_ versions;
//   - it exports only the Node-API entry points;
//   - with --cuda: it carries native code for sm_80, sm_86, sm_89 and sm_90a and compute_90 PTX.
// Usage: node scripts/check-binary.js FILE [--cuda] [--max-glibc 2.28] [--max-mb 50]
// Prints what it found; exits 1 when a check fails.
'use strict';
const fs = require('node:fs');

const EXPECTED_CUBINS = ['sm_80', 'sm_86', 'sm_89', 'sm_90a'];
const EXPECTED_PTX = ['compute_90'];
const EXPORTS = ['napi_register_module_v1', 'node_api_module_get_api_version_v1'];

function cString(buf, offset) {
  let end = offset;
  while (end < buf.length && buf[end] !== 0) end++;
  return buf.toString('latin1', offset, end);
}

/** The parts of an ELF64 little-endian shared object this check needs. */
function readElf(buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const type = buf.readUInt16LE(16);
  const machine = buf.readUInt16LE(18);
  const shoff = Number(buf.readBigUInt64LE(40));
  const shentsize = buf.readUInt16LE(58);
  const shnum = buf.readUInt16LE(60);
  const shstrndx = buf.readUInt16LE(62);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    sections.push({
      nameOffset: buf.readUInt32LE(at),
      type: buf.readUInt32LE(at + 4),
      offset: Number(buf.readBigUInt64LE(at + 24)),
      size: Number(buf.readBigUInt64LE(at + 32)),
      link: buf.readUInt32LE(at + 40),
      entsize: Number(buf.readBigUInt64LE(at + 56)),
    });
  }
  const names = sections[shstrndx];
  for (const s of sections) s.name = cString(buf, names.offset + s.nameOffset);
  const byName = (name) => sections.find((s) => s.name === name);
  const dynstr = byName('.dynstr');
  const str = (offset) => cString(buf, dynstr.offset + offset);

  const needed = [];
  const dynamic = byName('.dynamic');
  for (let at = dynamic.offset; at < dynamic.offset + dynamic.size; at += 16) {
    const tag = Number(buf.readBigInt64LE(at));
    if (tag === 0) break;
    if (tag === 1) needed.push(str(Number(buf.readBigUInt64LE(at + 8)))); // DT_NEEDED
  }

  // .gnu.version_r: Verneed { u16 version, u16 cnt, u32 file, u32 aux, u32 next }, Vernaux
  // { u32 hash, u16 flags, u16 other, u32 name, u32 next }.
  const versionNeeds = [];
  const verneed = byName('.gnu.version_r');
  if (verneed) {
    let at = verneed.offset;
    for (;;) {
      const cnt = buf.readUInt16LE(at + 2);
      const file = str(buf.readUInt32LE(at + 4));
      let aux = at + buf.readUInt32LE(at + 8);
      for (let i = 0; i < cnt; i++) {
        versionNeeds.push({ file, version: str(buf.readUInt32LE(aux + 8)) });
        aux += buf.readUInt32LE(aux + 12);
      }
      const next = buf.readUInt32LE(at + 12);
      if (next === 0) break;
      at += next;
    }
  }

  // Defined global or weak symbols of .dynsym: Elf64_Sym { u32 name, u8 info, u8 other, u16 shndx, u64 value, u64 size }.
  const exported = [];
  const dynsym = byName('.dynsym');
  for (let at = dynsym.offset + 24; at < dynsym.offset + dynsym.size; at += 24) {
    const bind = buf[at + 4] >> 4;
    const shndx = buf.readUInt16LE(at + 6);
    if (shndx !== 0 && (bind === 1 || bind === 2)) exported.push(str(buf.readUInt32LE(at)));
  }
  return { type, machine, needed, versionNeeds, exported, fatbin: byName('.nv_fatbin') };
}

/**
 * The CUDA code in the .nv_fatbin section: fatbin containers (u32 magic 0xba55ed50, u16 version,
 * u16 header size, u64 size) of entries (u16 kind: 1 PTX, 2 ELF; u16 version; u32 header size;
 * u64 payload size; ...; u32 arch at +28; u32 flags at +40, 0x100000 marking an 'a' target).
 */
function readFatbin(buf, section) {
  const found = [];
  if (!section) return found;
  let at = section.offset;
  const end = section.offset + section.size;
  while (at + 16 <= end) {
    if (buf.readUInt32LE(at) !== 0xba55ed50) {
      at += 8; // containers are 8-byte aligned
      continue;
    }
    const headerSize = buf.readUInt16LE(at + 6);
    const size = Number(buf.readBigUInt64LE(at + 8));
    let entry = at + headerSize;
    while (entry < at + headerSize + size) {
      const kind = buf.readUInt16LE(entry);
      const entryHeader = buf.readUInt32LE(entry + 4);
      const payload = Number(buf.readBigUInt64LE(entry + 8));
      const arch = buf.readUInt32LE(entry + 28);
      const specific = (buf.readUInt32LE(entry + 40) & 0x100000) !== 0 ? 'a' : '';
      if (kind === 2) found.push(`sm_${arch}${specific}`);
      else if (kind === 1) found.push(`compute_${arch}${specific}`);
      entry += entryHeader + payload;
    }
    at += headerSize + size;
  }
  return found;
}

function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Runs every check; returns { report, failures }. */
function checkBinary(file, { cuda = false, maxGlibc = '2.28', maxMb = 50 } = {}) {
  const buf = fs.readFileSync(file);
  const elf = readElf(buf);
  const failures = [];
  if (elf.type !== 3) failures.push('not a shared object');
  if (elf.machine !== 62) failures.push('not an x86-64 binary');

  const forbidden = elf.needed.filter((lib) => /^(libcudart|libcuda\.|libstdc\+\+|libnvrtc)/.test(lib));
  if (forbidden.length > 0) failures.push(`links ${forbidden.join(', ')} at load time`);

  const glibc = [...new Set(elf.versionNeeds.filter((v) => v.version.startsWith('GLIBC_')).map((v) => v.version.slice(6)))].sort(compareVersions);
  const newest = glibc[glibc.length - 1] ?? 'none';
  if (glibc.length > 0 && compareVersions(newest, maxGlibc) > 0) {
    const late = elf.versionNeeds.filter((v) => v.version.startsWith('GLIBC_') && compareVersions(v.version.slice(6), maxGlibc) > 0);
    failures.push(`needs GLIBC_${newest}, newer than ${maxGlibc} (${late.map((v) => `${v.version} from ${v.file}`).join(', ')})`);
  }
  const cxx = elf.versionNeeds.filter((v) => /^(GLIBCXX|CXXABI)_/.test(v.version)).map((v) => v.version);
  if (cxx.length > 0) failures.push(`needs the system libstdc++ (${cxx.join(', ')})`);

  const extra = elf.exported.filter((s) => !EXPORTS.includes(s));
  if (extra.length > 0) failures.push(`exports more than the Node-API entry points: ${extra.slice(0, 10).join(', ')}${extra.length > 10 ? ', ...' : ''}`);
  if (!elf.exported.includes('napi_register_module_v1')) failures.push('does not export napi_register_module_v1');

  const code = readFatbin(buf, elf.fatbin);
  if (cuda) {
    const missing = [...EXPECTED_CUBINS, ...EXPECTED_PTX].filter((t) => !code.includes(t));
    if (missing.length > 0) failures.push(`CUDA code missing for ${missing.join(', ')} (has: ${code.join(', ') || 'none'})`);
  }
  const mb = buf.length / 2 ** 20;
  if (mb > maxMb) failures.push(`${mb.toFixed(1)} MB, over ${maxMb} MB`);

  const report = [
    `file: ${file} (${mb.toFixed(1)} MB)`,
    `needed: ${elf.needed.join(', ')}`,
    `newest GLIBC_ version needed: ${newest} (limit ${maxGlibc})`,
    `exports: ${elf.exported.slice(0, 10).join(', ')}${elf.exported.length > 10 ? `, ... (${elf.exported.length})` : ''}`,
    `CUDA code: ${code.join(', ') || 'none'}`,
  ];
  return { report, failures, newestGlibc: newest, needed: elf.needed, cudaCode: code };
}

module.exports = { checkBinary, readElf, readFatbin };

if (require.main === module) {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--') && !/^\d/.test(a));
  const value = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : fallback;
  };
  if (!file) {
    process.stderr.write('usage: check-binary.js FILE [--cuda] [--max-glibc 2.28] [--max-mb 50]\n');
    process.exit(2);
  }
  const { report, failures } = checkBinary(file, { cuda: args.includes('--cuda'), maxGlibc: value('--max-glibc', '2.28'), maxMb: Number(value('--max-mb', '50')) });
  process.stdout.write(report.map((l) => `  ${l}`).join('\n') + '\n');
  if (failures.length > 0) {
    process.stderr.write(`check-binary: ${failures.length} problem(s):\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write('check-binary: ok\n');
}
