#!/usr/bin/env python3
"""Reads an Nsight Compute report (.ncu-rep) where no ncu is installed (the development machine): the
file is "NVR\\0", a 4-byte version, a 2-byte header, then blocks of <uint32 length><protobuf message>.
Block 3 holds the metric names (field 4, repeated field 1); each later block holds one profiled kernel:
its demangled name (field 7) and its metric results (field 13: 1 the name's index, 2 the value, 3 per-PC
instances {1: pc, 2: value}).
The layout was read off reports of ncu 2025 (S19-1); a report it does not fit is refused, not guessed.

  python3 bench/cuda/ncu_report.py REPORT [--metrics SUBSTR ...] [--pcs N] [--ranges]

Prints each kernel's duration, DRAM traffic, issue activity and sampled stall reasons; --metrics adds
every metric whose name contains one of the substrings; --pcs N the N most sampled PCs (offset from the
lowest PC, executions, top stall reasons); --ranges runs of PCs executed equally often, which separate
the warp roles of a warp-specialized kernel.
"""
import argparse
import collections
import struct
import sys


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return r, i


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('report')
    ap.add_argument('--metrics', nargs='*', default=[])
    ap.add_argument('--pcs', type=int, default=0)
    ap.add_argument('--ranges', action='store_true')
    a = ap.parse_args()
    for k, (res, per_pc) in enumerate(read(a.report)):
        name = res.get('kernel', f'kernel {k}')
        us = (res.get('gpu__time_duration.sum') or 0) / 1e3
        print(f'== {name}: {us:.1f} us, grid {res.get("launch__grid_size")} x {res.get("launch__block_size")}, '
              f'{res.get("launch__registers_per_thread")} registers')
        rd, wr = res.get('dram__bytes_read.sum') or 0, res.get('dram__bytes_write.sum') or 0
        print(f'   DRAM read {rd / 1e6:.1f} MB, written {wr / 1e6:.1f} MB ({(rd + wr) / max(us, 1e-9) / 1e6:.2f} TB/s); '
              f'issue slots busy {res.get("smsp__issue_active.avg.pct_of_peak_sustained_active") or 0:.1f}%; '
              f'L2 hit {res.get("lts__t_sector_hit_rate.pct") or 0:.1f}%')
        stalls = {n[len(STALL):]: v for n, v in res.items() if n.startswith(STALL) and not n.endswith('not_issued')}
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
        reasons = {n[len(STALL):]: d for n, d in per_pc.items() if n.startswith(STALL) and not n.endswith('not_issued')}

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
