#!/usr/bin/env python3
"""Source transforms for the CPU emulation of the CUDA kernels (see build.sh).

  transform.py file SRC DST [OLD=>NEW ...]   a .cu file as host C++: emu_cuda.h first, dynamic shared
                                             memory from the launcher, __shared__ -> static (blocks run
                                             one at a time), <<<...>>> -> emu_launch(...), ex2 PTX -> exp2f
  transform.py mma SRC DST                   cuda/common/mma.cuh with ldmatrix and mma.sync done in software,
                                             warp-collectively, following the PTX fragment layouts
  transform.py sm90 SRC_DIR DST_DIR          the headers of cuda/sm90 as `file` does, and in each wrapper the
                                             `#if SSD_SM90A` block (its inline PTX) replaced by the call into
                                             emu_sm90.h that SM90 names for the function
"""
import re
import sys

LDSM = r'''__device__ __forceinline__ void ldsm_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                       const void* p) {
  // emulation: lane 8q + i addressed row i of matrix q; lane L gets row L/4, columns 2(L%4), +1
  const uint16_t* rows[32];
  emu::allgather(static_cast<const uint16_t*>(p), rows);
  const int lane = threadIdx.x % 32;
  uint32_t o[4];
  for (int q = 0; q < 4; ++q) {
    const uint16_t* row = rows[8 * q + lane / 4];
    o[q] = (uint32_t)row[2 * (lane % 4)] | ((uint32_t)row[2 * (lane % 4) + 1] << 16);
  }
  r0 = o[0]; r1 = o[1]; r2 = o[2]; r3 = o[3];
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                         const void* p) {
  // emulation, transposed: lane L gets (row 2(L%4), col L/4) and (row 2(L%4)+1, col L/4)
  const uint16_t* rows[32];
  emu::allgather(static_cast<const uint16_t*>(p), rows);
  const int lane = threadIdx.x % 32;
  uint32_t o[4];
  for (int q = 0; q < 4; ++q) {
    const uint16_t lo = rows[8 * q + 2 * (lane % 4)][lane / 4];
    const uint16_t hi = rows[8 * q + 2 * (lane % 4) + 1][lane / 4];
    o[q] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
  r0 = o[0]; r1 = o[1]; r2 = o[2]; r3 = o[3];
}
__device__ __forceinline__ void stsm_x4(void* p, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  // emulation: lane 8m + i addressed row i of matrix m, which lanes 4i .. 4i + 3 hold in register m
  struct R { uint32_t r[4]; } mine = {{r0, r1, r2, r3}}, all[32];
  emu::allgather(mine, all);
  const int lane = threadIdx.x % 32, m = lane / 8, i = lane % 8;
  uint32_t* row = static_cast<uint32_t*>(p);
  for (int t = 0; t < 4; ++t) row[t] = all[4 * i + t].r[m];
}

'''

MMA = r'''template <class T>
__device__ __forceinline__ void mma_emu(float c[4], const FragA<T>& a, const FragB<T>& b) {
  struct F { uint32_t a[4], b[2]; } mine, all[32];
  for (int i = 0; i < 4; ++i) mine.a[i] = a.r[i];
  mine.b[0] = b.r[0]; mine.b[1] = b.r[1];
  emu::allgather(mine, all);
  float A[16][16], B[16][8];
  for (int L = 0; L < 32; ++L) {
    const int g = L >> 2, t = L & 3;
    for (int r = 0; r < 4; ++r) {
      const float2 v = unpack2<T>(all[L].a[r]);
      A[g + 8 * (r & 1)][2 * t + 8 * (r >> 1)] = v.x;
      A[g + 8 * (r & 1)][2 * t + 1 + 8 * (r >> 1)] = v.y;
    }
    for (int r = 0; r < 2; ++r) {
      const float2 v = unpack2<T>(all[L].b[r]);
      B[2 * t + 8 * r][g] = v.x;
      B[2 * t + 1 + 8 * r][g] = v.y;
    }
  }
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  for (int q = 0; q < 4; ++q) {
    const int row = g + 8 * (q >> 1), col = 2 * t + (q & 1);
    float s = c[q];
    for (int k = 0; k < 16; ++k) s = fmaf(A[row][k], B[k][col], s);
    c[q] = s;
  }
}
// every 16-bit type (the fp32 emulation's own mma, a non-template for FragA<float>, is preferred)
template <class T>
__device__ __forceinline__ void mma(float c[4], const FragA<T>& a, const FragB<T>& b) { mma_emu<T>(c, a, b); }
'''


# The emulation of each sm90 wrapper (csrc/cuda/sm90), in terms of the wrapper's parameters.
SM90 = {
    'mbar_init': 'emu::sm90::mbar_init(bar, count);',
    'mbar_init_fence': 'emu::sm90::mbar_init_fence();',
    'mbar_arrive': 'emu::sm90::mbar_arrive(bar);',
    'mbar_arrive_expect_tx': 'emu::sm90::mbar_arrive_expect_tx(bar, bytes);',
    'mbar_try_wait': 'return emu::sm90::mbar_try_wait(bar, parity);',
    'tma_prefetch': 'emu::sm90::tma_prefetch(map);',
    'tma_load_2d': 'const int c[2] = {c0, c1};\n  emu::sm90::tma_load(dst, map, bar, c, 2);',
    'tma_load_3d': 'const int c[3] = {c0, c1, c2};\n  emu::sm90::tma_load(dst, map, bar, c, 3);',
    'fence_proxy_async_smem': 'emu::sm90::fence_proxy_async();',
    'tma_store_2d': 'const int c[2] = {c0, c1};\n  emu::sm90::tma_store(map, src, c, 2);',
    'tma_store_3d': 'const int c[3] = {c0, c1, c2};\n  emu::sm90::tma_store(map, src, c, 3);',
    'tma_store_commit': 'emu::sm90::bulk_commit();',
    'tma_store_wait_read': 'emu::sm90::bulk_wait(N);',
    'tma_store_wait': 'emu::sm90::bulk_wait(N);',
    'wgmma_fence': 'emu::sm90::wgmma_fence();',
    'wgmma_commit': 'emu::sm90::wgmma_commit();',
    'wgmma_wait': 'emu::sm90::wgmma_wait(N);',
    'wgmma_hold': '',
    'regs_lower': '',
    'regs_raise': '',
    'wgmma_ss': ('emu::sm90::wgmma<T, N>(d, nullptr, desc_a, desc_b, accumulate ? 1 : 0, kScaleA, kScaleB, kTransA, '
                 'kTransB);'),
    'wgmma_rs': 'emu::sm90::wgmma<T, N>(d, a, 0, desc_b, accumulate ? 1 : 0, kScaleA, kScaleB, kKMajor, kTransB);',
}


def skip_code(s, i):
    """Index after the comment, string or character literal, or preprocessor line at s[i], else i."""
    if s.startswith('//', i):
        return s.index('\n', i)
    if s.startswith('/*', i):
        return s.index('*/', i) + 2
    if s[i] in '"\'':
        j = i + 1
        while s[j] != s[i]:
            j += 2 if s[j] == '\\' else 1
        return j + 1
    if s[i] == '#' and s[:i].rstrip(' \t').endswith('\n'):
        j = i
        while True:
            j = s.index('\n', j)
            if s[j - 1] != '\\':
                return j
            j += 1
    return i


def body_end(s, i):
    """s[i] is '{': the index after its matching '}'."""
    depth = 0
    while True:
        j = skip_code(s, i)
        if j != i:
            i = j
            continue
        if s[i] == '{':
            depth += 1
        elif s[i] == '}':
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def transform_sm90(src_dir, dst_dir):
    import os
    used = set()
    for name in sorted(os.listdir(src_dir)):
        if not name.endswith(('.cuh', '.h')):
            continue
        src, dst = os.path.join(src_dir, name), os.path.join(dst_dir, name)
        transform_file(src, dst, [])
        s = open(dst).read()
        out, pos = [], 0
        for m in re.finditer(r'__device__ __forceinline__ [^;{()]*?\b(\w+)\(', s):
            if m.start() < pos:
                continue
            open_brace = s.index('{', m.end())
            end = body_end(s, open_brace)
            body = s[open_brace:end]
            guard = re.search(r'\n#if SSD_SM90A\n.*?\n#endif\n', body, re.S)
            if guard:
                fn = m.group(1)
                if fn not in SM90:
                    sys.exit(f'transform: {src}: {fn} has inline PTX but no emulation in transform.py SM90')
                used.add(fn)
                body = body[:guard.start()] + '\n  ' + SM90[fn] + '\n' + body[guard.end():]
            out.append(s[pos:open_brace] + body)
            pos = end
        s = ''.join(out) + s[pos:]
        code = re.sub(r'//[^\n]*', '', re.sub(r'\n#if SSD_SM90A\n#include [^\n]*\n#endif\n', '\n', s))
        if re.search(r'\basm\b', code):
            sys.exit(f'transform: {src}: inline PTX left outside the wrappers that SM90 emulates')
        s = s.replace('#include "emu_cuda.h"\n', '#include "emu_sm90.h"\n', 1)
        open(dst, 'w').write(s)
    missing = set(SM90) - used
    if missing:
        sys.exit(f'transform: no wrapper found for {sorted(missing)} in {src_dir}')


def launches(s):
    def rep(mo):
        name, cfg, args = mo.group(1), mo.group(2), mo.group(3)
        parts = [x.strip() for x in re.split(r',(?![^()]*\))', cfg)]
        while len(parts) < 4:
            parts.append('0' if len(parts) == 2 else 'nullptr')
        return f'emu_launch({", ".join([name] + parts + ([args] if args.strip() else []))});'
    return re.sub(r'(\w+(?:<[^<>]*>)?)<<<(.*?)>>>\((.*?)\);', rep, s)


def transform_file(src, dst, subs):
    s = open(src).read()
    s = '#include "emu_cuda.h"\n' + s
    s = s.replace('extern __shared__ __align__(16) char smem[];', 'char* smem = emu_dyn_smem;')
    s = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = reinterpret_cast<\1*>(emu_dyn_smem);', s)
    s = re.sub(r'\b__shared__\b', 'static', s)
    s = s.replace('asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));', 'y = exp2f(x);')
    s = s.replace('asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.f + __expf(-z)));', 'r = 1.f / (1.f + __expf(-z));')
    # cp.async (forward): a synchronous 16-byte copy with zero fill into the block's shared memory,
    # addressed by offset; commit and wait become no-ops
    s = s.replace('static_cast<uint32_t>(__cvta_generic_to_shared(', 'emu_smem_off((')
    s = re.sub(r'asm volatile\("cp\.async\.cg\.shared\.global \[%0\], \[%1\], 16, %2;\\n" ::"r"\((.*?)\), "l"\((.*?)\), "r"\((.*?)\)\);',
               r'emu_cp_async(\1, \2, \3);', s)
    s = s.replace('asm volatile("cp.async.commit_group;\\n" ::);', '')
    s = s.replace('asm volatile("cp.async.wait_group %0;\\n" ::"n"(N));', '')
    s = launches(s)
    for a in subs:
        k, v = a.split('=>', 1)
        if k not in s:
            sys.exit(f'transform: "{k}" not found in {src}')
        s = s.replace(k, v)
    open(dst, 'w').write(s)


def transform_mma(src, dst):
    m = open(src).read()
    a = m.index('__device__ __forceinline__ void ldsm_x4(')
    b = m.index('// Load the 16x16 A tile')
    m = m[:a] + LDSM + m[b:]
    # the 16-bit mma.sync wrappers: the SSD_MMA_16BIT macros, their expansion over the dtype table and
    # the #undef of the last
    a = m.index('#define SSD_MMA_16BIT(')
    end = '#undef SSD_MMA_16BIT\n'
    b = m.index(end) + len(end)
    m = m[:a] + MMA + m[b:]
    open(dst, 'w').write(m)


if __name__ == '__main__':
    if sys.argv[1] == 'file':
        transform_file(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == 'mma':
        transform_mma(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == 'sm90':
        transform_sm90(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
