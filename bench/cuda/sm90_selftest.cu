// Self-test of the sm_90a building blocks of csrc/cuda/sm90 (mbarrier, TMA, wgmma) before any kernel
// uses them. One source for both: on an H100 (bench/cuda/sm90_selftest.sh) and in the CPU emulation
// (bench/cuda/emu/sm90.sh), where three more cases check that the emulation reports misuse.
//   sm90_selftest [filter]      runs the cases whose name contains filter; PASS/FAIL per case, exit 1
//                               on any failure
// Cases:
//  - tma: one box loaded through an mbarrier with expect_tx, its shared-memory bytes compared with the
//    placement that swizzle.h states (no swizzle, 32B, 64B, 128B; bf16, f16, fp32; 2D and 3D; a box
//    crossing the tensor's edges on both sides, zero-filled); a TMA store of a box that threads wrote
//    in swizzled order, clipped at the tensor's edges.
//  - gemm: A (64 x 64) and B (64 x N) loaded by TMA, D = A B by four wgmma k-steps in two commit
//    groups (wait<1>, wait<0>), the first with scale-d = 0 over NaN accumulators; A in shared memory
//    (K- or MN-major) or in registers; B K- or MN-major; 128B swizzle, and K-major with 64B or none;
//    bf16 and f16; N = 32 .. 256; a negated A; tensors smaller than the boxes (zero fill).
//  - pipeline: 2 CTAs, each a producer warp issuing TMA into a 2-stage ring (full / empty
//    mbarriers) and two consumer warpgroups running wgmma over 8 k-tiles, releasing a stage once
//    wgmma.wait_group<1> retired the k-tile that read it.
// Inputs are multiples of 1/4 in [-2, 2]: every product and partial sum is exact in fp32, so results
// must equal the double-precision reference exactly, whatever the order of the hardware's sums.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/sm90/mbarrier.cuh"
#include "cuda/sm90/tensor_map.h"
#include "cuda/sm90/tma.cuh"
#include "cuda/sm90/wgmma.cuh"
#include "ck.h"

using namespace ssd::cuda::sm90;
using bf16 = __nv_bfloat16;
using f16 = __half;

// The descriptor's fields (PTX ISA 9.7.15.5.1.2.2): start >> 4 in bits 0-13, LBO >> 4 in 16-29, SBO >> 4
// in 32-45, the swizzle code in 62-63 (1 = 128B, 2 = 64B, 3 = 32B).
static_assert(make_smem_desc(0x1400, 16, 1024, Swizzle::k128B) == 0x4000004000010140ull, "descriptor fields");
static_assert(make_smem_desc(0x3fff0, 8192, 512, Swizzle::k64B) == 0x8000002002003fffull, "descriptor fields");
static_assert(make_smem_desc(0x20, 2048, 128, Swizzle::kNone) == 0x0000000800800002ull, "descriptor fields");
static_assert(desc_advance(make_smem_desc(0x400, 16, 1024, Swizzle::k32B), 96) ==
                  make_smem_desc(0x460, 16, 1024, Swizzle::k32B),
              "descriptor advance");

// ---- device ------------------------------------------------------------------------------------

// The block's dynamic shared memory from its first 1024-byte aligned shared address (the launches
// ask for 1 KiB more than they use).
__device__ __forceinline__ char* smem_1024() {
  extern __shared__ __align__(16) char smem[];
  return smem + ((1024u - (smem_addr(smem) & 1023u)) & 1023u);
}

// One box (rank 2 or 3) through an mbarrier that expects bytes + extra, its shared-memory bytes to out.
__global__ void k_tma_dump(const __grid_constant__ CUtensorMap map, int rank, int c0, int c1, int c2, uint32_t bytes,
                           uint32_t extra, uint8_t* out) {
  char* s = smem_1024();
  uint64_t* bar = reinterpret_cast<uint64_t*>(s + ((bytes + 15) & ~15u));
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    tma_prefetch(&map);
    mbar_arrive_expect_tx(bar, bytes + extra);
    if (rank == 2) tma_load_2d(s, &map, bar, c0, c1);
    else tma_load_3d(s, &map, bar, c0, c1, c2);
  }
  mbar_wait(bar, 0);
  for (uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = static_cast<uint8_t>(s[i]);
}

// The threads write element e of a 2D box (value e + 1, es bytes) at its swizzled place, then one
// thread stores the box at (c0, c1).
__global__ void k_tma_store(const __grid_constant__ CUtensorMap map, int c0, int c1, uint32_t elems, uint32_t es,
                            Swizzle sw) {
  char* s = smem_1024();
  for (uint32_t e = threadIdx.x; e < elems; e += blockDim.x) {
    const uint32_t v = e + 1;
    memcpy(s + swizzle_addr(e * es, sw), &v, es);
  }
  fence_proxy_async_smem();
  __syncthreads();
  if (threadIdx.x == 0) {
    tma_store_2d(&map, s, c0, c1);
    tma_store_commit();
    tma_store_wait_read<0>();
    tma_store_wait<0>();
  }
}

// A K-major tile of R rows x 64 k in shared memory, as TMA lays it out for a swizzle span S (0, 64 or
// 128): blocks of kb = W / 2 k (W = S, or 16 without swizzle), block b holding row r at (b R + r) W,
// then swizzled. With S = 128 one 2D box is the whole tile; otherwise a 3D box (k % kb, row, k / kb).
template <int kSpan>
struct KMajorTile {
  static constexpr int kRowBytes = kSpan ? kSpan : 16, kBlockK = kRowBytes / 2;
  static constexpr Swizzle kSwizzle = kSpan == 128 ? Swizzle::k128B : kSpan == 64 ? Swizzle::k64B : Swizzle::kNone;
  // elements (row, k) and (row, k + 1), k even
  static __device__ __forceinline__ uint32_t pair(const char* tile, int rows, int row, int k) {
    const uint32_t at = static_cast<uint32_t>(((k / kBlockK) * rows + row) * kRowBytes + (k % kBlockK) * 2);
    return *reinterpret_cast<const uint32_t*>(tile + swizzle_addr(at, kSwizzle));
  }
  // the descriptor of k-step ks (k = 16 ks ..): swizzled, 8-row atoms (SBO 8 W) and the k offset inside
  // the row; without swizzle, core matrices of 8 rows x 16 bytes (SBO 128), k blocks R * 16 apart (LBO)
  static __device__ __forceinline__ uint64_t desc(const char* tile, int rows, int ks) {
    const int k0 = 16 * ks;
    const uint64_t block = smem_desc(tile + (k0 / kBlockK) * rows * kRowBytes, kSpan ? 16 : rows * 16,
                                     kSpan ? 8 * kRowBytes : 128, kSwizzle);
    return desc_advance(block, (k0 % kBlockK) * 2);
  }
};

// d (64 x N) = kScaleA A (64 x 64) B (64 x N). A at s (8 KiB): K-major (KMajorTile), or (kSpan 128 only)
// MN-major, one box of 64 k-rows x 64 m. B at s + 8 KiB: K-major, N rows (KMajorTile); or (kSpan 128
// only) MN-major, N / 64 boxes of 64 k-rows x 64 n (8 KiB each: LBO 8192 between them). MN-major: SBO
// 1024 between groups of 8 k, a k-step two atoms = 2048 bytes.
template <class T, int N, int kTransA, int kTransB, bool kARegs, int kScaleA, int kSpan = 128>
__global__ void __launch_bounds__(128) k_gemm(const __grid_constant__ CUtensorMap map_a,
                                              const __grid_constant__ CUtensorMap map_b, float* out) {
  using Tile = KMajorTile<kSpan>;
  static_assert(kSpan == 128 || (kTransA == kKMajor && kTransB == kKMajor), "MN-major with 128B swizzle only");
  static_assert(!kARegs || kTransA == kKMajor, "A in registers is loaded from a K-major tile");
  char* s = smem_1024();
  char* sa = s;
  char* sb = s + 8192;
  uint64_t* bar = reinterpret_cast<uint64_t*>(sb + N * 128);
  const int t = threadIdx.x, warp = t / 32, g = (t % 32) / 4, q = t % 4;
  if (t == 0) {
    mbar_init(bar, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (t == 0) {
    tma_prefetch(&map_a);
    tma_prefetch(&map_b);
    mbar_arrive_expect_tx(bar, 8192u + N * 128u);
    if (kSpan == 128 || kTransA == kMNMajor) tma_load_2d(sa, &map_a, bar, 0, 0);
    else tma_load_3d(sa, &map_a, bar, 0, 0, 0);
    if (kSpan == 128 && kTransB == kKMajor) tma_load_2d(sb, &map_b, bar, 0, 0);
    else tma_load_3d(sb, &map_b, bar, 0, 0, 0);
  }
  mbar_wait(bar, 0);
  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) d[i] = __int_as_float(0x7fc00001);  // scale-d = 0 must not read it
  uint32_t a[4][4];
  if (kARegs) {
#pragma unroll
    for (int ks = 0; ks < 4; ++ks)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        a[ks][r] = Tile::pair(sa, 64, 16 * warp + g + 8 * (r & 1), 16 * ks + 2 * q + 8 * (r >> 1));
  }
  wgmma_hold(d);
  wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    const uint64_t db = kTransB == kKMajor ? Tile::desc(sb, N, ks)
                                           : smem_desc(sb + 2048 * ks, 8192, 1024, Swizzle::k128B);
    if constexpr (kARegs) {
      wgmma_rs<T, N, kTransB, kScaleA>(d, a[ks], db, ks > 0);
    } else {
      const uint64_t da = kTransA == kKMajor ? Tile::desc(sa, 64, ks)
                                             : smem_desc(sa + 2048 * ks, 8192, 1024, Swizzle::k128B);
      wgmma_ss<T, N, kTransA, kTransB, kScaleA>(d, da, db, ks > 0);
    }
    if (ks == 1) wgmma_commit();
  }
  wgmma_commit();
  wgmma_hold(d);
  wgmma_wait<1>();
  wgmma_wait<0>();
  wgmma_hold(d);
  if (kARegs) {
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) wgmma_hold(a[ks]);
  }
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const int row = 16 * warp + g + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * q + (i & 1);
    out[row * N + col] = d[i];
  }
}

// C (128 rows per CTA x 128) = A B over ktiles k-tiles of 64. Warps 0-7: two consumer warpgroups
// (rows 64 wg ..); warp 8: the producer. Stage s at s * 32 KiB: A 128 x 64 K-major (16 KiB), B 64 x 128
// MN-major (two 8 KiB boxes of a 3D map). kEarlyRelease (emulation only): the consumers release a
// stage right after issuing the wgmmas that read it, which the emulation must report.
template <class T, bool kEarlyRelease>
__global__ void __launch_bounds__(288) k_pipeline(const __grid_constant__ CUtensorMap map_a,
                                                  const __grid_constant__ CUtensorMap map_b, float* out, int ktiles) {
  constexpr int kStages = 2, kStageBytes = 32768;
  char* s = smem_1024();
  uint64_t* full = reinterpret_cast<uint64_t*>(s + kStages * kStageBytes);
  uint64_t* empty = full + kStages;
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  if (t == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbar_init(&full[i], 1);
      mbar_init(&empty[i], 8);  // lane 0 of each consumer warp
    }
    mbar_init_fence();
  }
  __syncthreads();
  if (warp == 8) {
    if (lane == 0) {
      tma_prefetch(&map_a);
      tma_prefetch(&map_b);
      for (int kt = 0; kt < ktiles; ++kt) {
        const int st = kt % kStages, use = kt / kStages;
        mbar_wait(&empty[st], (use & 1) ^ 1);
        char* stage = s + st * kStageBytes;
        mbar_arrive_expect_tx(&full[st], kStageBytes);
        tma_load_2d(stage, &map_a, &full[st], 64 * kt, 128 * blockIdx.x);
        tma_load_3d(stage + 16384, &map_b, &full[st], 0, 64 * kt, 0);
      }
    }
    return;
  }
  const int wg = t / 128, g = (t % 32) / 4, q = t % 4, wrow = 16 * (warp % 4);
  float d[64];
  for (int kt = 0; kt < ktiles; ++kt) {
    const int st = kt % kStages, use = kt / kStages;
    const char* stage = s + st * kStageBytes;
    mbar_wait(&full[st], use & 1);
    wgmma_hold(d);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks)
      wgmma_ss<T, 128, kKMajor, kMNMajor>(d, smem_desc(stage + 8192 * wg + 32 * ks, 16, 1024, Swizzle::k128B),
                                          smem_desc(stage + 16384 + 2048 * ks, 8192, 1024, Swizzle::k128B),
                                          kt > 0 || ks > 0);
    wgmma_commit();
    wgmma_hold(d);
    if (kEarlyRelease && lane == 0) mbar_arrive(&empty[st]);
    wgmma_wait<1>();  // the previous k-tile's wgmmas are done: its stage may be refilled
    if (!kEarlyRelease && kt > 0 && lane == 0) mbar_arrive(&empty[(kt - 1) % kStages]);
  }
  wgmma_wait<0>();
  wgmma_hold(d);
  for (int i = 0; i < 64; ++i) {
    const int row = 128 * blockIdx.x + 64 * wg + wrow + g + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * q + (i & 1);
    out[row * 128 + col] = d[i];
  }
}

#ifdef SSD_CUDA_EMULATION
// Waits for a phase that needs two arrivals after one: the emulation must report a deadlock.
__global__ void k_deadlock() {
  uint64_t* bar = reinterpret_cast<uint64_t*>(smem_1024());
  if (threadIdx.x == 0) {
    mbar_init(bar, 2);
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) mbar_arrive(bar);
  mbar_wait(bar, 0);
}
#endif

// ---- host --------------------------------------------------------------------------------------


static int g_failed = 0, g_run = 0;
static const char* g_filter = "";

static bool selected(const std::string& name) { return name.find(g_filter) != std::string::npos; }
static void report(const std::string& name, const std::string& problem) {
  ++g_run;
  if (problem.empty()) {
    printf("PASS %s\n", name.c_str());
  } else {
    ++g_failed;
    printf("FAIL %s: %s\n", name.c_str(), problem.c_str());
  }
  fflush(stdout);
}
// The launch's error, after it finished ("" if none).
static std::string launch_error() {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e == cudaSuccess) return "";
  cudaGetLastError();
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t bytes) : n(bytes) { CK(cudaMalloc(&p, bytes)); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class V>
  void put(const std::vector<V>& v) {
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(V), cudaMemcpyHostToDevice));
  }
  template <class V> std::vector<V> get() const {
    std::vector<V> v(n / sizeof(V));
    CK(cudaMemcpy(v.data(), p, v.size() * sizeof(V), cudaMemcpyDeviceToHost));
    return v;
  }
};

static std::string encode(CUtensorMap* map, const TmaTensor& t) {
  std::string err;
  return encode_tensor_map(map, t, &err) == SSD_OK ? "" : err;
}

template <class K>
static void allow_smem(K* kernel, size_t bytes) {
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// ---- TMA loads: the bytes of the box in shared memory ----

struct DumpCase {
  const char* name;
  TmaDtype dtype;
  Swizzle swizzle;
  int rank;
  uint64_t dims[3];
  uint32_t box[3];
  int coords[3];
  bool view3d;  // dimension 2 steps by 64 elements inside the rows of a 2D matrix (the MN-major B view)
};

static void tma_dump_case(const DumpCase& c, uint32_t extra, bool expect_failure) {
  const uint32_t es = c.dtype == TmaDtype::kF32 ? 4 : 2;
  // the matrix behind the view: rows of `pitch` bytes
  const uint64_t row_elems = c.view3d ? c.dims[0] * c.dims[2] : c.dims[0];
  const uint64_t pitch = (row_elems * es + 15) / 16 * 16;
  const uint64_t rows = c.view3d ? c.dims[1] : c.dims[1] * (c.rank == 3 ? c.dims[2] : 1);
  std::vector<uint8_t> host(pitch * rows);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<uint8_t>(i * 7 + (i >> 8) * 13 + 1);
  DevBuf src(host.size());
  src.put(host);
  TmaTensor t;
  t.dtype = c.dtype;
  t.rank = c.rank;
  t.base = src.p;
  t.swizzle = c.swizzle;
  for (int i = 0; i < c.rank; ++i) {
    t.dims[i] = c.dims[i];
    t.box[i] = c.box[i];
  }
  t.strides[0] = pitch;
  if (c.rank == 3) t.strides[1] = c.view3d ? 64 * es : pitch * c.dims[1];
  alignas(64) CUtensorMap map;
  const std::string bad = encode(&map, t);
  if (!bad.empty()) return report(c.name, bad);
  const uint32_t bytes = tma_box_bytes(t);
  DevBuf out(bytes);
  const size_t smem = 1024 + bytes + 16;
  allow_smem(k_tma_dump, smem);
  uint8_t* dump = static_cast<uint8_t*>(out.p);
  k_tma_dump<<<1, 128, smem>>>(map, c.rank, c.coords[0], c.coords[1], c.coords[2], bytes, extra, dump);
  const std::string err = launch_error();
  if (expect_failure) return report(c.name, err.empty() ? "the emulation did not report the misuse" : "");
  if (!err.empty()) return report(c.name, err);
  const std::vector<uint8_t> got = out.get<uint8_t>();
  std::vector<uint8_t> want(bytes, 0);
  const uint32_t n = bytes / es;
  for (uint32_t e = 0; e < n; ++e) {
    const int i0 = e % c.box[0], i1 = (e / c.box[0]) % c.box[1], i2 = c.rank == 3 ? e / (c.box[0] * c.box[1]) : 0;
    const int64_t x = int64_t(c.coords[0]) + i0, y = int64_t(c.coords[1]) + i1,
                  z = c.rank == 3 ? int64_t(c.coords[2]) + i2 : 0;
    const bool inside = x >= 0 && x < int64_t(c.dims[0]) && y >= 0 && y < int64_t(c.dims[1]) &&
                        (c.rank == 2 || (z >= 0 && z < int64_t(c.dims[2])));
    const uint32_t at = swizzle_addr(e * es, c.swizzle);
    if (!inside) continue;
    const uint64_t off = c.view3d ? y * pitch + (z * 64 + x) * es
                                  : (z * c.dims[1] + y) * pitch + x * es;
    memcpy(&want[at], &host[off], es);
  }
  for (uint32_t i = 0; i < bytes; ++i)
    if (got[i] != want[i]) {
      char buf[160];
      snprintf(buf, sizeof buf, "shared-memory byte %u (element %u) is 0x%02x, expected 0x%02x", i, i / es, got[i],
               want[i]);
      return report(c.name, buf);
    }
  report(c.name, "");
}

static void tma_store_case() {
  const char* name = "tma store bf16 128B swizzle: box 64x16 at (32, -4) of an 80 x 10 tensor, clipped";
  if (!selected(name)) return;
  const uint64_t cols = 80, rows = 10, pitch_elems = 96;  // padding columns 80..95 must stay untouched
  const int c0 = 32, c1 = -4;
  std::vector<uint16_t> host(pitch_elems * rows, 0xabab);
  DevBuf dst(host.size() * 2);
  dst.put(host);
  TmaTensor t;
  t.dtype = TmaDtype::kBf16;
  t.base = dst.p;
  t.dims[0] = cols;
  t.dims[1] = rows;
  t.strides[0] = pitch_elems * 2;
  t.box[0] = 64;
  t.box[1] = 16;
  t.swizzle = Swizzle::k128B;
  alignas(64) CUtensorMap map;
  const std::string bad = encode(&map, t);
  if (!bad.empty()) return report(name, bad);
  k_tma_store<<<1, 128, 1024 + 2048>>>(map, c0, c1, 64 * 16, 2, Swizzle::k128B);
  const std::string err = launch_error();
  if (!err.empty()) return report(name, err);
  const std::vector<uint16_t> got = dst.get<uint16_t>();
  for (uint64_t y = 0; y < rows; ++y)
    for (uint64_t x = 0; x < pitch_elems; ++x) {
      const int64_t i0 = int64_t(x) - c0, i1 = int64_t(y) - c1;
      const bool stored = x < cols && i0 >= 0 && i0 < 64 && i1 >= 0 && i1 < 16;
      const uint16_t want = stored ? static_cast<uint16_t>(i1 * 64 + i0 + 1) : 0xabab;
      if (got[y * pitch_elems + x] != want) {
        char buf[128];
        snprintf(buf, sizeof buf, "element (%llu, %llu) is 0x%04x, expected 0x%04x", (unsigned long long)y,
                 (unsigned long long)x, got[y * pitch_elems + x], want);
        return report(name, buf);
      }
    }
  report(name, "");
}

// A map the driver must refuse, caught by tensor_map_problem() and by the driver itself.
static void tensor_map_errors_case() {
  const char* name = "tensor map errors come back as status and message";
  if (!selected(name)) return;
  DevBuf buf(4096);
  TmaTensor t;
  t.base = buf.p;
  t.dims[0] = 256;
  t.dims[1] = 8;
  t.strides[0] = 512;
  t.box[0] = 128;  // 256-byte rows: wider than the 128B swizzle
  t.box[1] = 8;
  t.swizzle = Swizzle::k128B;
  alignas(64) CUtensorMap map;
  std::string err;
  if (encode_tensor_map(&map, t, &err) != SSD_ERR_INVALID_ARGUMENT || err.find("wider") == std::string::npos)
    return report(name, "a 256-byte box row with 128B swizzle was not refused with a message: \"" + err + "\"");
  err.clear();
  const PFN_cuTensorMapEncodeTiled_v12000 encode_fn = tensor_map_encoder(&err);
  if (!encode_fn) return report(name, "no cuTensorMapEncodeTiled: " + err);
  const cuuint64_t dims[2] = {64, 8}, strides[1] = {128};
  const cuuint32_t box[2] = {64, 8}, ones[2] = {1, 1};
  const CUresult r = encode_fn(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, static_cast<char*>(buf.p) + 2, dims, strides,
                               box, ones, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                               CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  report(name, r == CUDA_SUCCESS ? "the driver took a global address that is not 16-byte aligned" : "");
}

// ---- wgmma ----

template <class T>
static uint16_t to_bits(double v) {
  T h = T(static_cast<float>(v));
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}
static double quarter(std::mt19937& rng) { return static_cast<int>(rng() % 17) / 4.0 - 2.0; }

// The tensor map of a K-major operand (rows x K, K contiguous) whose box is the KMajorTile of box_rows
// rows: with 128B swizzle a 2D box, else the 3D view (k % kb, row, k / kb) that K must fill exactly.
template <int kSpan>
static TmaTensor kmajor_map(TmaDtype dt, void* base, int rows, int K, int box_rows) {
  using Tile = KMajorTile<kSpan>;
  TmaTensor t;
  t.dtype = dt;
  t.base = base;
  t.swizzle = Tile::kSwizzle;
  t.dims[1] = rows;
  t.strides[0] = uint64_t(K) * 2;
  t.box[1] = box_rows;
  if (kSpan == 128) {
    t.dims[0] = K;
    t.box[0] = 64;
  } else {
    t.rank = 3;
    t.dims[0] = Tile::kBlockK;
    t.dims[2] = K / Tile::kBlockK;
    t.strides[1] = Tile::kRowBytes;
    t.box[0] = Tile::kBlockK;
    t.box[2] = 64 / Tile::kBlockK;
  }
  return t;
}

// The tensor map of an MN-major operand (K rows of `cols` elements, 128B swizzle) as the 3D view
// (n % 64, k, n / 64): its box is box_cols / 64 blocks of 64 k-rows x 64 columns, one after the other.
static TmaTensor mn_major_map(TmaDtype dt, void* base, int K, int cols, int box_cols) {
  TmaTensor t;
  t.dtype = dt;
  t.rank = 3;
  t.base = base;
  t.dims[0] = 64;
  t.dims[1] = K;
  t.dims[2] = cols / 64;
  t.strides[0] = uint64_t(cols) * 2;
  t.strides[1] = 128;
  t.box[0] = 64;
  t.box[1] = 64;
  t.box[2] = box_cols / 64;
  t.swizzle = Swizzle::k128B;
  return t;
}

// The first element of a rows x cols row-major result that is not want(m, n) (a double) rounded to
// float, as "label(m, n) = got, expected want"; "" when every element is.
template <class Want>
static std::string result_mismatch(const std::vector<float>& got, int rows, int cols, const char* label, Want want) {
  for (int m = 0; m < rows; ++m)
    for (int n = 0; n < cols; ++n) {
      const double w = want(m, n);
      const float g = got[size_t(m) * cols + n];
      if (!(g == static_cast<float>(w))) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s(%d, %d) = %.9g, expected %.9g", label, m, n, g, w);
        return buf;
      }
    }
  return "";
}

// A: m x k (m < M, k < K valid; rows of A's tensor have K elements), B: k x n (n < NV valid).
template <class T, int N, int kTransA, int kTransB, bool kARegs, int kScaleA, int kSpan = 128>
static void gemm_case(const std::string& name, int M, int K, int NV) {
  if (!selected(name)) return;
  std::mt19937 rng(static_cast<unsigned>(N * 131 + M * 7 + K + NV + kTransA * 11 + kTransB * 3 + kARegs * 5));
  std::vector<double> a(size_t(M) * K), b(size_t(K) * NV);
  for (double& v : a) v = quarter(rng);
  for (double& v : b) v = quarter(rng);
  std::vector<uint16_t> ha(a.size()), hb(b.size());
  if (kTransA == kKMajor) {  // stored m-major: M rows of K
    for (size_t i = 0; i < a.size(); ++i) ha[i] = to_bits<T>(a[i]);
  } else {  // stored k-major: K rows of M
    for (int m = 0; m < M; ++m)
      for (int k = 0; k < K; ++k) ha[size_t(k) * M + m] = to_bits<T>(a[size_t(m) * K + k]);
  }
  if (kTransB == kKMajor) {  // stored n-major: B^T, NV rows of K
    for (int n = 0; n < NV; ++n)
      for (int k = 0; k < K; ++k) hb[size_t(n) * K + k] = to_bits<T>(b[size_t(k) * NV + n]);
  } else {  // stored k-major rows of NV
    for (size_t i = 0; i < b.size(); ++i) hb[i] = to_bits<T>(b[i]);
  }
  DevBuf da(ha.size() * 2), db(hb.size() * 2), out(size_t(64) * N * 4);
  da.put(ha);
  db.put(hb);
  const TmaDtype dt = std::is_same<T, bf16>::value ? TmaDtype::kBf16 : TmaDtype::kF16;
  TmaTensor ta = kmajor_map<kSpan>(dt, da.p, M, K, 64);
  if (kTransA == kMNMajor) {  // one box of 64 k-rows x 64 m
    ta.dims[0] = M;
    ta.dims[1] = K;
    ta.strides[0] = uint64_t(M) * 2;
  }
  const TmaTensor tb = kTransB == kMNMajor ? mn_major_map(dt, db.p, K, NV, N) : kmajor_map<kSpan>(dt, db.p, NV, K, N);
  alignas(64) CUtensorMap map_a, map_b;
  std::string bad = encode(&map_a, ta);
  if (bad.empty()) bad = encode(&map_b, tb);
  if (!bad.empty()) return report(name, bad);
  const size_t smem = 1024 + 8192 + N * 128 + 16;
  allow_smem(k_gemm<T, N, kTransA, kTransB, kARegs, kScaleA, kSpan>, smem);
  k_gemm<T, N, kTransA, kTransB, kARegs, kScaleA, kSpan><<<1, 128, smem>>>(map_a, map_b, static_cast<float*>(out.p));
  const std::string err = launch_error();
  if (!err.empty()) return report(name, err);
  report(name, result_mismatch(out.get<float>(), 64, N, "d", [&](int m, int n) {
    double want = 0;
    if (m < M && n < NV)
      for (int k = 0; k < K; ++k) want += kScaleA * a[size_t(m) * K + k] * b[size_t(k) * NV + n];
    return want;
  }));
}

template <class T, bool kEarlyRelease>
static void pipeline_case(const std::string& name, bool expect_failure) {
  if (!selected(name)) return;
  constexpr int kCtas = 2, M = 128 * kCtas, N = 128, kTiles = 8, K = 64 * kTiles;
  std::mt19937 rng(1234);
  std::vector<double> a(size_t(M) * K), b(size_t(K) * N);
  for (double& v : a) v = quarter(rng);
  for (double& v : b) v = quarter(rng);
  std::vector<uint16_t> ha(a.size()), hb(b.size());
  for (size_t i = 0; i < a.size(); ++i) ha[i] = to_bits<T>(a[i]);
  for (size_t i = 0; i < b.size(); ++i) hb[i] = to_bits<T>(b[i]);
  DevBuf da(ha.size() * 2), db(hb.size() * 2), out(size_t(M) * N * 4);
  da.put(ha);
  db.put(hb);
  const TmaDtype dt = std::is_same<T, bf16>::value ? TmaDtype::kBf16 : TmaDtype::kF16;
  TmaTensor ta;
  ta.dtype = dt;
  ta.base = da.p;
  ta.dims[0] = K;
  ta.dims[1] = M;
  ta.strides[0] = uint64_t(K) * 2;
  ta.box[0] = 64;
  ta.box[1] = 128;
  ta.swizzle = Swizzle::k128B;
  const TmaTensor tb = mn_major_map(dt, db.p, K, N, N);
  alignas(64) CUtensorMap map_a, map_b;
  std::string bad = encode(&map_a, ta);
  if (bad.empty()) bad = encode(&map_b, tb);
  if (!bad.empty()) return report(name, bad);
  const size_t smem = 1024 + 2 * 32768 + 64;
  allow_smem(k_pipeline<T, kEarlyRelease>, smem);
  k_pipeline<T, kEarlyRelease><<<kCtas, 288, smem>>>(map_a, map_b, static_cast<float*>(out.p), kTiles);
  const std::string err = launch_error();
  if (expect_failure) return report(name, err.empty() ? "the emulation did not report the misuse" : "");
  if (!err.empty()) return report(name, err);
  report(name, result_mismatch(out.get<float>(), M, N, "c", [&](int m, int n) {
    double want = 0;
    for (int k = 0; k < K; ++k) want += a[size_t(m) * K + k] * b[size_t(k) * N + n];
    return want;
  }));
}

int main(int argc, char** argv) {
  if (argc > 1) g_filter = argv[1];
  const DumpCase dumps[] = {
      {"tma bf16 2D no swizzle: box 40x6 at (8, 3) of 100 x 20", TmaDtype::kBf16, Swizzle::kNone, 2, {100, 20, 1},
       {40, 6, 1}, {8, 3, 0}, false},
      {"tma bf16 2D 32B swizzle: box 16x16 at (16, 2) of 48 x 24", TmaDtype::kBf16, Swizzle::k32B, 2, {48, 24, 1},
       {16, 16, 1}, {16, 2, 0}, false},
      {"tma bf16 2D 64B swizzle: box 32x16 at (32, 4) of 96 x 40", TmaDtype::kBf16, Swizzle::k64B, 2, {96, 40, 1},
       {32, 16, 1}, {32, 4, 0}, false},
      {"tma f16 2D 128B swizzle: box 64x24 at (64, 8) of 192 x 40", TmaDtype::kF16, Swizzle::k128B, 2, {192, 40, 1},
       {64, 24, 1}, {64, 8, 0}, false},
      {"tma fp32 2D 128B swizzle: box 32x8 at (32, 0) of 64 x 8", TmaDtype::kF32, Swizzle::k128B, 2, {64, 8, 1},
       {32, 8, 1}, {32, 0, 0}, false},
      {"tma bf16 3D 128B swizzle: box 64x16x3 of the (n % 64, k, n / 64) view of a 24 x 192 matrix", TmaDtype::kBf16,
       Swizzle::k128B, 3, {64, 24, 3}, {64, 16, 3}, {0, 4, 0}, true},
      {"tma bf16 3D 128B swizzle: box 64x8x2 at (0, 0, 1) of 64 x 8 x 3", TmaDtype::kBf16, Swizzle::k128B, 3,
       {64, 8, 3}, {64, 8, 2}, {0, 0, 1}, false},
      {"tma bf16 2D 128B swizzle: box 64x16 at (-16, -5) of 40 x 7, zero-filled outside", TmaDtype::kBf16,
       Swizzle::k128B, 2, {40, 7, 1}, {64, 16, 1}, {-16, -5, 0}, false},
  };
  for (const DumpCase& c : dumps)
    if (selected(c.name)) tma_dump_case(c, 0, false);
  tma_store_case();
  tensor_map_errors_case();

  gemm_case<bf16, 64, kKMajor, kKMajor, false, 1>("gemm bf16 N=64 B K-major, A smem", 64, 64, 64);
  gemm_case<bf16, 128, kKMajor, kMNMajor, false, 1>("gemm bf16 N=128 B MN-major, A smem", 64, 64, 128);
  gemm_case<bf16, 256, kKMajor, kKMajor, false, 1>("gemm bf16 N=256 B K-major, A smem", 64, 64, 256);
  gemm_case<bf16, 192, kKMajor, kMNMajor, false, 1>("gemm bf16 N=192 B MN-major, A smem", 64, 64, 192);
  gemm_case<bf16, 128, kKMajor, kKMajor, true, 1>("gemm bf16 N=128 B K-major, A registers", 64, 64, 128);
  gemm_case<bf16, 64, kKMajor, kKMajor, false, -1>("gemm bf16 N=64 B K-major, A smem, A negated", 64, 64, 64);
  gemm_case<f16, 128, kKMajor, kKMajor, false, 1>("gemm f16 N=128 B K-major, A smem", 64, 64, 128);
  gemm_case<f16, 64, kKMajor, kMNMajor, true, 1>("gemm f16 N=64 B MN-major, A registers", 64, 64, 64);
  gemm_case<f16, 32, kKMajor, kKMajor, true, 1>("gemm f16 N=32 B K-major, A registers", 64, 64, 32);
  gemm_case<bf16, 128, kMNMajor, kMNMajor, false, 1>("gemm bf16 N=128 A MN-major, B MN-major", 64, 64, 128);
  gemm_case<f16, 64, kMNMajor, kKMajor, false, 1>("gemm f16 N=64 A MN-major, B K-major, M=48 K=40 (zero fill)", 48,
                                                  40, 64);
  gemm_case<bf16, 64, kKMajor, kKMajor, false, 1, 64>("gemm bf16 N=64 B K-major, A smem, 64B swizzle", 64, 64, 64);
  gemm_case<bf16, 128, kKMajor, kKMajor, true, 1, 64>("gemm bf16 N=128 B K-major, A registers, 64B swizzle", 64, 64,
                                                      128);
  gemm_case<f16, 128, kKMajor, kKMajor, false, 1, 0>("gemm f16 N=128 B K-major, A smem, no swizzle (core matrices)", 64,
                                                     64, 128);
  gemm_case<f16, 128, kKMajor, kKMajor, false, 1>("gemm f16 N=128 B K-major, A smem, M=50 K=56 N=100 (zero fill)", 50,
                                                  56, 100);
  gemm_case<bf16, 128, kKMajor, kKMajor, true, 1>(
      "gemm bf16 N=128 B K-major, A registers, M=50 K=56 N=100 (zero fill)", 50, 56, 100);

  pipeline_case<bf16, false>("pipeline bf16 2 CTAs x (producer warp + 2 consumer warpgroups), 2 stages, 8 k-tiles",
                             false);
  pipeline_case<f16, false>("pipeline f16 2 CTAs x (producer warp + 2 consumer warpgroups), 2 stages, 8 k-tiles",
                            false);
#ifdef SSD_CUDA_EMULATION
  {
    const char* name = "emu: a wait on a phase that never completes is reported (deadlock)";
    if (selected(name)) {
      k_deadlock<<<1, 64, 1024 + 16>>>();
      report(name, launch_error().empty() ? "the emulation did not report the deadlock" : "");
    }
    const DumpCase& c = dumps[3];
    if (selected("emu: expect_tx above the box's bytes is reported (deadlock)")) {
      DumpCase d = c;
      d.name = "emu: expect_tx above the box's bytes is reported (deadlock)";
      tma_dump_case(d, 16, true);
    }
  }
  pipeline_case<bf16, true>("emu: a stage refilled while a wgmma still reads it is reported", true);
#endif
  printf("%d passed, %d failed\n", g_run - g_failed, g_failed);
  return g_failed ? 1 : 0;
}
