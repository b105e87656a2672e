#!/usr/bin/env python3
"""Reads an Nsight Compute report (.ncu-rep) where no ncu is installed (the development machine): the
file is "NVR\\0", a 4-byte version, a 2-byte header, then blocks of <uint32 length><protobuf message>.
Block 3 holds the metric names (field 4, repeated field 1); each later block holds one profiled kernel:
its demangled name (field 7) and its metric results (field 13: 1 the name's index, 2 the value, 3 per-PC
instances {1: pc, 2: value}).
The layout was read off reports of ncu 2025 (S19-1); a report it does not fit is refused, not guessed.

  python3 bench/cuda/ncu_report.py REPORT [--metrics SUBSTR ...] [--pcs N] [--ranges] [--lines CUBIN ... [--top N]]

Prints each kernel's duration, DRAM traffic, issue activity and sampled stall reasons; --metrics adds
every metric whose name contains one of the substrings; --pcs N the N most sampled PCs (offset from the
lowest PC, executions, top stall reasons); --ranges runs of PCs executed equally often, which separate
the warp roles of a warp-specialized kernel.

--lines puts the samples on source lines (the --top N most sampled, default 25). There is no
disassembler here, but the report embeds the cubin it ran. A cubin built here from the same source with
the addon's flags plus -lineinfo carries the same SASS, which is checked byte for byte against the
embedded copy, and a DWARF line table:

  nvcc <the flags of chain_forward.cu.o in build-*/build.ninja> -lineinfo -cubin -o /tmp/cf.cubin csrc/cuda/sm90/chain_forward.cu

The table puts code inlined from a helper on the line of its call, and code the compiler moved on the
line it came from. A line's figure is the sum over its PCs. The quoted source is read from the
current directory's csrc/, include/ and bench/: run it from a checkout of the source that ran. "ex" is
the most executions of any one of its PCs: for example, once per block per warp of a role.
"""
import argparse
import bisect
import collections
import os
import re
import struct
import sys


def varint(b, i, signed=False):
    """The base-128 integer at b[i] (protobuf's varint, DWARF's ULEB128; SLEB128 where signed) and the
    index after it."""
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return (r - (1 << s) if signed and c & 0x40 else r), i


def fields(b):
    """The (field, wire type, value) triples of one protobuf message, or None if b is not one."""
    out, i, n = [], 0, len(b)
    try:
        while i < n:
            key, i = varint(b, i)
            f, wt = key >> 3, key & 7
            if f == 0:
                return None
            if wt == 0:
                v, i = varint(b, i)
            elif wt in (1, 5):
                size = 8 if wt == 1 else 4
                if i + size > n:
                    return None
                v, i = b[i:i + size], i + size
            elif wt == 2:
                size, i = varint(b, i)
                if i + size > n:
                    return None
                v, i = b[i:i + size], i + size
            else:
                return None
            out.append((f, wt, v))
    except IndexError:
        return None
    return out


def scalar(msg):
    """The first number in a value message (varint, double or float)."""
    for f, wt, v in fields(msg) or []:
        if wt == 0:
            return v
        if wt == 1:
            return struct.unpack('<d', v)[0]
        if wt == 5:
            return struct.unpack('<f', v)[0]
        if wt == 2 and all(32 <= c < 127 for c in v):
            return v.decode()
    return None


def read(path):
    data = open(path, 'rb').read()
    if data[:4] != b'NVR\0':
        sys.exit(f'{path}: not an Nsight Compute report')
    blocks, off = [], 10
    while off + 4 <= len(data):
        size = struct.unpack_from('<I', data, off)[0]
        if off + 4 + size > len(data):
            sys.exit(f'{path}: block at byte {off} runs past the end: a layout this reader does not know')
        blocks.append(data[off + 4:off + 4 + size])
        off += 4 + size
    top = fields(blocks[3]) if len(blocks) > 3 else None
    table = [v for f, wt, v in top or [] if f == 4 and wt == 2]
    if not table:
        sys.exit(f'{path}: no metric-name table in block 3: a layout this reader does not know')
    names = [v.decode() for f, wt, v in fields(table[0]) if f == 1 and wt == 2]
    kernels = []
    for blk in blocks[4:]:
        results, per_pc = {}, {}
        for f, wt, v in fields(blk) or []:
            if f == 7 and wt == 2:
                results['kernel'] = v.decode(errors='replace')
            if f != 13 or wt != 2:
                continue
            entry = fields(v) or []
            ids = [x for a, w, x in entry if a == 1 and w == 0]
            if not ids or ids[0] >= len(names):
                continue
            name = names[ids[0]]
            vals = [x for a, w, x in entry if a == 2 and w == 2]
            if vals:
                results[name] = scalar(vals[0])
            inst = {}
            for a, w, x in entry:
                if a == 3 and w == 2:
                    d = {aa: xx for aa, ww, xx in fields(x) or []}
                    if 1 in d:
                        inst[scalar(d[1])] = scalar(d[2]) if 2 in d else 0
            if inst:
                per_pc[name] = inst
        if results:
            kernels.append((results, per_pc))
    return kernels


STALL = 'smsp__pcsamp_warps_issue_stalled_'


def by_stall(metrics):
    """The sampled stall reasons among a kernel's metrics (or per-PC metrics), keyed by reason."""
    return {n[len(STALL):]: v for n, v in metrics.items() if n.startswith(STALL) and not n.endswith('not_issued')}


# A kernel's per-PC figures: executions and samples by PC, the lowest executed PC (the function's
# start) and the sampled stall reasons by PC.
Pcs = collections.namedtuple('Pcs', 'execs samples base reasons')


def elf_sections(b, base=0):
    """{name: (offset in b, size, type)} of the ELF64 image at b[base:]."""
    shoff = struct.unpack_from('<Q', b, base + 0x28)[0]
    entsize, num, strndx = struct.unpack_from('<HHH', b, base + 0x3A)
    raw = [struct.unpack_from('<IIQQQQIIQQ', b, base + shoff + k * entsize) for k in range(num)]
    names = raw[strndx][4] + base
    return {b[names + r[0]:b.index(b'\0', names + r[0])].decode(): (base + r[4], r[5], r[1]) for r in raw}


def embedded_texts(data):
    """{'.text.<mangled>': bytes} of every cubin embedded in a report."""
    out, i = {}, data.find(b'\x7fELF')
    while i >= 0:
        try:
            for n, (o, z, t) in elf_sections(data, i).items():
                if n.startswith('.text.') and z:
                    out[n] = data[o:o + z]
        except (struct.error, ValueError, IndexError):
            pass
        i = data.find(b'\x7fELF', i + 1)
    return out


def line_tables(path):
    """{'.text.<mangled>': (text bytes, sorted [(address, file, line)])} of a cubin built with -lineinfo:
    its .debug_line sequences, each tied to its function's section through .rela.debug_line."""
    b = open(path, 'rb').read()
    if b[:4] != b'\x7fELF':
        sys.exit(f'{path}: not a cubin (ELF)')
    secs = elf_sections(b)
    if '.debug_line' not in secs or '.rela.debug_line' not in secs:
        sys.exit(f'{path}: no line table: build it with -lineinfo')
    order = list(secs)
    so, sz, _ = secs['.symtab']
    strtab = secs['.strtab'][0]
    syms = [struct.unpack_from('<IBBHQQ', b, so + 24 * k) for k in range(sz // 24)]
    ro, rz, _ = secs['.rela.debug_line']
    where = {}
    for k in range(rz // 24):
        off, info, _ = struct.unpack_from('<QQq', b, ro + 24 * k)
        where[off] = order[syms[info >> 32][3]]
    lo, lz, _ = secs['.debug_line']
    d = b[lo:lo + lz]
    rows = collections.defaultdict(list)
    i = 0
    while i < len(d):
        end = i + 4 + struct.unpack_from('<I', d, i)[0]
        version, hlen = struct.unpack_from('<HI', d, i + 4)
        j = i + 10
        mil = d[j]
        j += 2 if version >= 4 else 1
        lbase, lrange, obase = struct.unpack_from('<b', d, j + 1)[0], d[j + 2], d[j + 3]
        oplens = d[j + 4:j + 3 + obase]
        j += 3 + obase
        while d[j]:
            j = d.index(b'\0', j) + 1
        j += 1
        files = [None]
        while d[j]:
            e = d.index(b'\0', j)
            files.append(d[j:e].decode())
            j = e + 1
            for _ in range(3):
                _, j = varint(d, j)
        j = i + 10 + hlen
        addr, f, line, func = 0, 1, 1, None

        def row():
            rows[func].append((addr, files[f] if f < len(files) else '?', line))

        while j < end:
            op = d[j]
            j += 1
            if op >= obase:
                addr += (op - obase) // lrange * mil
                line += lbase + (op - obase) % lrange
                row()
            elif op == 0:
                n, j = varint(d, j)
                sub, body, j = d[j], j + 1, j + n
                if sub == 1:
                    addr, f, line = 0, 1, 1
                elif sub == 2:
                    addr = struct.unpack_from('<Q', d, body)[0]
                    func = where.get(body)
            elif op == 1:
                row()
            elif op == 2:
                v, j = varint(d, j)
                addr += v * mil
            elif op == 3:
                v, j = varint(d, j, signed=True)
                line += v
            elif op == 4:
                f, j = varint(d, j)
            elif op == 8:
                addr += (255 - obase) // lrange * mil
            elif op == 9:
                addr += struct.unpack_from('<H', d, j)[0]
                j += 2
            elif op not in (6, 7, 10, 11):
                for _ in range(oplens[op - 1]):
                    _, j = varint(d, j)
        i = end
    return {n: (b[secs[n][0]:secs[n][0] + secs[n][1]], sorted(r)) for n, r in rows.items() if n in secs}


def mangled_parts(kernel):
    """Pieces a demangled kernel name's mangled form must contain: its identifiers and, for each
    (int)N or (bool)B template argument, LiNE or LbBE."""
    parts = re.findall(r'\(int\)(-?\d+)', kernel)
    bools = re.findall(r'\(bool\)(\d)', kernel)
    idents = re.findall(r'[A-Za-z_][A-Za-z_0-9]*', re.sub(r'\((int|bool)\)-?\d+', '', kernel.split('(SsdParams')[0]))
    return [x for x in idents if x not in ('void', 'int', 'bool')] + [f'Li{n}E' for n in parts] + [f'Lb{n}E' for n in bools]


def source_text(name, line, roots=('csrc', 'include', 'bench')):
    for root in roots:
        for dirpath, _, files in os.walk(root):
            if name in files:
                try:
                    return open(os.path.join(dirpath, name)).read().split('\n')[line - 1].strip()
                except (OSError, IndexError):
                    return ''
    return ''


def print_lines(kernel, pcs, embedded, tables, top):
    candidates = [n for n in tables if all(x in n for x in mangled_parts(kernel))]
    same = [n for n in candidates if embedded.get(n) == tables[n][0]]
    if not same:
        why = 'no function of that name' if not candidates else 'its SASS differs from the one that ran'
        print(f'   --lines: no cubin given matches ({why}); build it from the source that ran')
        return
    rows = tables[same[0]][1]
    addrs = [r[0] for r in rows]
    execs, samples, base, reasons = pcs
    count, why, most = collections.Counter(), collections.defaultdict(collections.Counter), {}
    for pc, n in samples.items():
        k = bisect.bisect_right(addrs, pc - base) - 1
        key = rows[k][1:] if k >= 0 else ('?', 0)
        count[key] += n
        most[key] = max(most.get(key, 0), execs.get(pc, 0))
        for r, d in reasons.items():
            why[key][r] += d.get(pc, 0)
    total = sum(count.values()) or 1
    print(f'   the {top} most sampled source lines of {total} samples (share, file:line, ex, top reasons | source):')
    for (f, line), n in count.most_common(top):
        reason = ', '.join(f'{r} {v}' for r, v in why[(f, line)].most_common(2) if v)
        print(f'     {100 * n / total:5.1f}% {f}:{line:<5} ex {most[(f, line)]:8}  {reason} | {source_text(f, line)[:80]}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('report')
    ap.add_argument('--metrics', nargs='*', default=[])
    ap.add_argument('--pcs', type=int, default=0)
    ap.add_argument('--ranges', action='store_true')
    ap.add_argument('--lines', nargs='*', default=[])
    ap.add_argument('--top', type=int, default=25)
    a = ap.parse_args()
    embedded, tables = {}, {}
    if a.lines:
        embedded = embedded_texts(open(a.report, 'rb').read())
        for cubin in a.lines:
            tables.update(line_tables(cubin))
    for k, (res, per_pc) in enumerate(read(a.report)):
        name = res.get('kernel', f'kernel {k}')
        us = (res.get('gpu__time_duration.sum') or 0) / 1e3
        print(f'== {name}: {us:.1f} us, grid {res.get("launch__grid_size")} x {res.get("launch__block_size")}, '
              f'{res.get("launch__registers_per_thread")} registers')
        rd, wr = res.get('dram__bytes_read.sum') or 0, res.get('dram__bytes_write.sum') or 0
        print(f'   DRAM read {rd / 1e6:.1f} MB, written {wr / 1e6:.1f} MB ({(rd + wr) / max(us, 1e-9) / 1e6:.2f} TB/s); '
              f'issue slots busy {res.get("smsp__issue_active.avg.pct_of_peak_sustained_active") or 0:.1f}%; '
              f'L2 hit {res.get("lts__t_sector_hit_rate.pct") or 0:.1f}%')
        stalls = by_stall(res)
        total = sum(v for v in stalls.values() if isinstance(v, (int, float))) or 1
        top = sorted(stalls.items(), key=lambda kv: -(kv[1] or 0))[:8]
        print('   sampled stalls: ' + ', '.join(f'{n} {100 * v / total:.0f}%' for n, v in top))
        for n in sorted(res):
            if any(s in n for s in a.metrics):
                print(f'   {n} = {res[n]}')
        execs = per_pc.get('inst_executed', {})
        samples = per_pc.get('smsp__pcsamp_sample_count', {})
        if not execs:
            continue
        base = min(execs)
        reasons = by_stall(per_pc)

        def why(pcs):
            c = collections.Counter()
            for r, d in reasons.items():
                for p in pcs:
                    c[r] += d.get(p, 0)
            return ', '.join(f'{r} {v}' for r, v in c.most_common(3) if v)

        if a.pcs:
            print(f'   the {a.pcs} most sampled PCs (offset, samples, executions, top reasons):')
            for p in sorted(samples, key=lambda p: -samples[p])[:a.pcs]:
                print(f'     {p - base:#8x} {samples[p]:6} {execs.get(p, 0):9}  {why([p])}')
        if a.lines:
            print_lines(name, Pcs(execs, samples, base, reasons), embedded, tables, a.top)
        if a.ranges:
            print('   runs of PCs executed equally often (first, last, executions, instructions, samples, top reasons):')
            run = []
            for p in sorted(execs) + [None]:
                if run and (p is None or execs[p] != execs[run[0]] or p - run[-1] > 0x10):
                    n = sum(samples.get(q, 0) for q in run)
                    if execs[run[0]] and (len(run) >= 4 or n > 50):
                        print(f'     {run[0] - base:#8x} {run[-1] - base:#8x} {execs[run[0]]:9} {len(run):5} {n:6}  {why(run)}')
                    run = []
                if p is not None:
                    run.append(p)


if __name__ == '__main__':
    main()
