// CPU emulation of the sm_90a instructions that csrc/cuda/sm90 wraps: transform.py's sm90 mode puts
// calls to these functions where the wrappers have inline PTX (see sm90.sh). Section numbers are those
// of the PTX ISA 9.x documentation.
//
// mbarrier (9.7.13.15): a phase counter, the arrivals still pending in the phase, the expected count
//   they reset to, and a signed tx-count; the phase completes when pending arrivals and tx-count are
//   both zero. try_wait.parity(P) succeeds when the current phase's parity differs from P.
// TMA loads (9.7.9.25, cp.async.bulk.tensor): the box is read from global memory when the copy is
//   issued (zeros, or NaN with CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA, for elements outside
//   the tensor) and placed in the swizzled order of "Tensors: Swizzling Modes" (csrc/cuda/sm90/swizzle.h
//   states it); it lands in shared memory, and its bytes count on the mbarrier (complete-tx), only when
//   a thread next waits on that mbarrier, or when every thread of the block is stuck: the latest moment
//   a correct program can tell, so that a read without the wait sees stale data.
// TMA stores: done when issued (elements outside the tensor skipped); the source bytes must not change
//   before cp.async.bulk.wait_group(.read) retires them (checked).
// wgmma (9.7.15): computed for the 128 threads of the warpgroup together, operands decoded from the
//   matrix descriptors (9.7.15.5.1.2.2) and the canonical layouts (9.7.15.5.1.2) with the swizzle
//   applied to the shared-memory address, accumulators in the fragment layout of 9.7.15.5.1.1.1. The
//   product is computed when issued and again when wgmma.wait_group retires it: a difference (the
//   shared memory or A registers changed while it was in flight) is an error, and so is a TMA that
//   writes the operands of an in-flight wgmma. Until retired the accumulators hold a NaN pattern, so a
//   read before the wait shows up, and a write before it is reported. Stricter than PTX: a wgmma.fence
//   must come between each wgmma.wait_group and the next wgmma.
//
// Shared-memory operands of TMA and wgmma must lie in the block's dynamic shared memory, whose offset
// stands for the shared-memory address (emu_launch aligns it to 1024 bytes).
#pragma once
#include "emu_cuda.h"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <map>

namespace emu { namespace sm90 {

// ---- shared memory -----------------------------------------------------------------------------
inline uint32_t smem_offset(const void* p, size_t bytes, const char* what) {
  const char* c = static_cast<const char*>(p);
  if (emu_dyn_smem == nullptr || c < emu_dyn_smem || c + bytes > emu_dyn_smem + emu_dyn_smem_bytes)
    fail("%s: [%p, +%zu) is not inside the block's dynamic shared memory (%zu bytes)", what, p, bytes,
         emu_dyn_smem_bytes);
  return static_cast<uint32_t>(c - emu_dyn_smem);
}
// The swizzle of csrc/cuda/sm90/swizzle.h, written again here so that the emulation does not take the
// code it checks on trust: 16-byte chunk bits [4, 4+b) XOR address bits [7, 7+b), b = log2(span / 16).
inline uint32_t swizzle(uint32_t addr, uint32_t span) {
  return span == 0 ? addr : addr ^ (((addr >> 7) & (span / 16 - 1)) << 4);
}
inline float bits_to_float(uint16_t h, bool bf16) {
  if (bf16) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  __half x;
  memcpy(&x, &h, 2);
  return __half2float(x);
}

// ---- mbarrier ----------------------------------------------------------------------------------
struct Mbar {
  uint32_t expected = 0, pending = 0, phase = 0;
  int64_t tx = 0;
  int init_thread = -1;
  bool fenced = false;  // fence.mbarrier_init ran in the initializing thread after the init
};
inline std::map<const void*, Mbar> mbars;
struct Wait {
  const void* bar = nullptr;
  uint32_t parity = 0;
};
inline Wait waits[1024];
constexpr int64_t kTxLimit = (int64_t(1) << 20) - 1;

inline Mbar& mbar(const void* bar, const char* op) {
  auto it = mbars.find(bar);
  if (it == mbars.end()) fail("%s: %p is not an initialized mbarrier", op, bar);
  return it->second;
}
inline void mbar_settle(Mbar& m) {
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.expected;
  }
}
inline void mbar_init(void* bar, uint32_t count) {
  if (reinterpret_cast<uintptr_t>(bar) % 8 != 0) fail("mbarrier.init: %p is not 8-byte aligned", bar);
  if (count == 0 || count > kTxLimit) fail("mbarrier.init: count %u outside 1 .. 2^20 - 1", count);
  Mbar m;
  m.expected = m.pending = count;
  m.init_thread = static_cast<int>(threadIdx.x);
  mbars[bar] = m;
  memset(bar, 0xee, 8);  // opaque: what the program reads there means nothing
  ++arrivals;
}
inline void mbar_init_fence() {
  for (auto& kv : mbars)
    if (kv.second.init_thread == static_cast<int>(threadIdx.x)) kv.second.fenced = true;
}
inline void mbar_arrive(void* bar, uint32_t count = 1) {
  Mbar& m = mbar(bar, "mbarrier.arrive");
  if (count > m.pending)
    fail("mbarrier.arrive: %u arrival(s) on a phase with %u pending (more arrivals than mbarrier.init expects)", count,
         m.pending);
  m.pending -= count;
  mbar_settle(m);
  ++arrivals;
}
inline void mbar_tx(Mbar& m, int64_t delta, const char* op) {
  m.tx += delta;
  if (m.tx > kTxLimit || m.tx < -kTxLimit) fail("%s: tx-count %lld outside +-(2^20 - 1)", op, (long long)m.tx);
}
inline void mbar_arrive_expect_tx(void* bar, uint32_t bytes) {
  Mbar& m = mbar(bar, "mbarrier.arrive.expect_tx");
  mbar_tx(m, bytes, "mbarrier.arrive.expect_tx");
  mbar_arrive(bar);
}
inline void mbar_complete_tx(void* bar, uint32_t bytes) {
  Mbar& m = mbar(bar, "complete-tx of a TMA load");
  if (!m.fenced)
    fail("a TMA load completes on the mbarrier at %p, whose mbarrier.init was not followed by fence.mbarrier_init "
         "(mbar_init_fence) in the initializing thread", bar);
  mbar_tx(m, -static_cast<int64_t>(bytes), "complete-tx of a TMA load");
  mbar_settle(m);
}
inline void deliver_loads_of(const void* bar);
inline bool mbar_try_wait(void* bar, uint32_t parity) {
  if (parity > 1) fail("mbarrier.try_wait.parity: parity %u (0 or 1)", parity);
  deliver_loads_of(bar);
  Mbar& m = mbar(bar, "mbarrier.try_wait.parity");
  Wait& w = waits[threadIdx.x];
  if ((m.phase & 1u) != parity) {
    w = Wait();
    ++arrivals;
    return true;
  }
  w.bar = bar;
  w.parity = parity;
  yield();
  return false;
}

// ---- tensor maps (the driver's cuTensorMapEncodeTiled) -----------------------------------------
struct TensorMap {  // what an emulated CUtensorMap holds
  uint64_t magic;
  const char* base;
  uint64_t dims[5];
  uint64_t strides[5];  // bytes; strides[0] = the element size
  uint16_t box[5];
  uint8_t rank, elem_bytes, swizzle_span, nan_fill, bf16, f16;
};
static_assert(sizeof(TensorMap) <= sizeof(CUtensorMap), "the emulated tensor map must fit a CUtensorMap");
constexpr uint64_t kMapMagic = 0x53534454454e534full;

inline CUresult encode_tiled_problem(const char* what) {
  fprintf(stderr, "EMU cuTensorMapEncodeTiled: %s\n", what);
  return CUDA_ERROR_INVALID_VALUE;
}
// The requirements that cuda.h lists for cuTensorMapEncodeTiled, for the types and modes emulated;
// what the emulation does not model is refused as CUDA_ERROR_NOT_SUPPORTED.
inline CUresult CUDAAPI encode_tiled(CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank, void* base,
                                     const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                     const cuuint32_t* elem_strides, CUtensorMapInterleave interleave,
                                     CUtensorMapSwizzle swz, CUtensorMapL2promotion, CUtensorMapFloatOOBfill fill) {
  if (reinterpret_cast<uintptr_t>(map) % 64 != 0) return encode_tiled_problem("tensorMap not 64-byte aligned");
  uint32_t es = 0;
  switch (dtype) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8:
      es = 1;
      break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16:
      es = 2;
      break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
      es = 4;
      break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64:
      es = 8;
      break;
    default:
      fprintf(stderr, "EMU cuTensorMapEncodeTiled: data type %d not emulated\n", (int)dtype);
      return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (rank == 0 || rank > 5) return encode_tiled_problem("tensorRank outside 1 .. 5");
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0) return encode_tiled_problem("globalAddress not 16-byte aligned");
  for (uint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (uint64_t(1) << 32)) return encode_tiled_problem("globalDim outside 1 .. 2^32");
    if (box[i] == 0 || box[i] > 256) return encode_tiled_problem("boxDim outside 1 .. 256");
    if (elem_strides[i] == 0 || elem_strides[i] > 8) return encode_tiled_problem("elementStrides outside 1 .. 8");
    if (i > 0 && elem_strides[i] != 1) {
      fprintf(stderr, "EMU cuTensorMapEncodeTiled: elementStrides other than 1 not emulated\n");
      return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (i + 1 < rank && (strides[i] % 16 != 0 || strides[i] >= (uint64_t(1) << 40)))
      return encode_tiled_problem("globalStrides not a multiple of 16 below 2^40");
  }
  if (box[0] * es % 16 != 0) return encode_tiled_problem("boxDim[0] * element size not a multiple of 16 bytes");
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) {
    fprintf(stderr, "EMU cuTensorMapEncodeTiled: interleaved layouts not emulated\n");
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  uint32_t span = 0;
  switch (swz) {
    case CU_TENSOR_MAP_SWIZZLE_NONE: span = 0; break;
    case CU_TENSOR_MAP_SWIZZLE_32B: span = 32; break;
    case CU_TENSOR_MAP_SWIZZLE_64B: span = 64; break;
    case CU_TENSOR_MAP_SWIZZLE_128B: span = 128; break;
    default:
      fprintf(stderr, "EMU cuTensorMapEncodeTiled: swizzle mode %d not emulated\n", (int)swz);
      return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (span != 0 && box[0] * es > span) return encode_tiled_problem("box inner dimension wider than the swizzle span");
  if (span != 0 && box[0] * es != span) {
    fprintf(stderr, "EMU cuTensorMapEncodeTiled: a box row narrower than the swizzle span is not emulated\n");
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  const bool is_float = dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT16 || dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 ||
                        dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT64 || dtype == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  if (fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && !is_float)
    return encode_tiled_problem("NaN fill of a non-float type");
  TensorMap t;
  memset(&t, 0, sizeof t);
  t.magic = kMapMagic;
  t.base = static_cast<const char*>(base);
  t.rank = static_cast<uint8_t>(rank);
  t.elem_bytes = static_cast<uint8_t>(es);
  t.swizzle_span = static_cast<uint8_t>(span);
  t.nan_fill = fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
  t.bf16 = dtype == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  t.f16 = dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  for (uint32_t i = 0; i < rank; ++i) {
    t.dims[i] = dims[i];
    t.strides[i] = i == 0 ? es : strides[i - 1];
    t.box[i] = static_cast<uint16_t>(box[i]);
  }
  memset(map, 0, sizeof *map);
  memcpy(map, &t, sizeof t);
  return CUDA_SUCCESS;
}

inline const TensorMap& tensor_map(const void* map, const char* op) {
  const TensorMap* t = static_cast<const TensorMap*>(map);
  if (t->magic != kMapMagic) fail("%s: %p is not a tensor map made by cuTensorMapEncodeTiled", op, map);
  return *t;
}
inline uint32_t box_bytes(const TensorMap& t) {
  uint32_t n = t.elem_bytes;
  for (int i = 0; i < t.rank; ++i) n *= t.box[i];
  return n;
}
// Calls f(global element address or nullptr when outside the tensor, byte offset in the swizzled box)
// for each element of the box at coords, whose shared-memory image starts at address `at`.
template <class F>
inline void for_each_box_element(const TensorMap& t, const int* coords, uint32_t at, F&& f) {
  int idx[5] = {0, 0, 0, 0, 0};
  const uint32_t n = box_bytes(t) / t.elem_bytes;
  for (uint32_t e = 0; e < n; ++e) {
    uint32_t rest = e, linear = 0, scale = 1;
    bool inside = true;
    const char* src = t.base;
    for (int d = 0; d < t.rank; ++d) {
      idx[d] = static_cast<int>(rest % t.box[d]);
      rest /= t.box[d];
      linear += idx[d] * scale;
      scale *= t.box[d];
      const int64_t c = static_cast<int64_t>(coords[d]) + idx[d];
      if (c < 0 || c >= static_cast<int64_t>(t.dims[d])) inside = false;
      else src += c * t.strides[d];
    }
    f(inside ? src : nullptr, swizzle(at + linear * t.elem_bytes, t.swizzle_span) - at);
  }
}
inline void check_box_smem(const TensorMap& t, uint32_t at, const char* op) {
  if (at % 128 != 0) fail("%s: shared-memory address %u not 128-byte aligned", op, at);
  if (t.swizzle_span != 0 && at % (8u * t.swizzle_span) != 0)
    fail("%s: shared-memory address %u not aligned to the %u-byte repeat of the %u-byte swizzle (the emulation "
         "requires the pattern to start with the box)", op, at, 8u * t.swizzle_span, t.swizzle_span);
}

// ---- wgmma state (declared here: TMA checks in-flight operands) ---------------------------------
struct Wgmma {
  float* d = nullptr;
  int n = 0;  // N; the thread holds N / 2 accumulators
  bool bf16 = true, a_in_regs = false;
  uint64_t desc_a = 0, desc_b = 0;
  int scale_d = 0, scale_a = 1, scale_b = 1, trans_a = 0, trans_b = 0;
  float a_rows[2][16] = {};  // A in registers: this thread's rows, gathered from the warpgroup
  const uint32_t* a_regs = nullptr;
  uint32_t a_copy[4] = {};
  std::vector<float> base, result;
  uint32_t lo[2] = {0, 0}, hi[2] = {0, 0};  // shared-memory byte ranges of A (if not in registers) and B
  long op = 0;     // the warpgroup's count of wgmmas before this one
  long group = -1;  // -1: not committed yet
};
struct WgThread {
  std::vector<Wgmma> inflight;
  bool fenced = false;
  long groups = 0;  // committed so far
  long issued = 0;
};
inline WgThread wg_threads[1024];
// The shared-memory byte ranges [lo, hi) that the in-flight wgmmas read (A unless in registers, B),
// by (warpgroup, op): an operation is complete once one thread of its warpgroup retired it.
struct Ranges {
  uint32_t lo[2], hi[2];
};
inline std::map<std::pair<int, long>, Ranges> inflight_ops;

inline void check_not_inflight(uint32_t lo, uint32_t hi, const char* op) {
  for (const auto& kv : inflight_ops)
    for (int o = 0; o < 2; ++o)
      if (lo < kv.second.hi[o] && kv.second.lo[o] < hi)
        fail("%s writes shared memory [%u, %u) that an in-flight wgmma of warpgroup %d reads ([%u, %u), operand %c): "
             "release the stage only after wgmma.wait_group retired it", op, lo, hi, kv.first.first, kv.second.lo[o],
             kv.second.hi[o], o ? 'B' : 'A');
}

// ---- TMA ---------------------------------------------------------------------------------------
struct PendingLoad {
  char* dst;
  std::vector<char> bytes;  // the swizzled box, read from global memory at issue
  void* bar;
  uint32_t at;
};
inline std::vector<PendingLoad> pending_loads;

// What a TMA copy between a tensor map's box and shared memory at smem checks first: the map's rank is
// the copy's, and the box lies in shared memory, aligned as the map's swizzle requires.
struct TmaBox {
  const TensorMap& t;
  uint32_t n;   // the box's bytes
  uint32_t at;  // its shared-memory offset
};
inline TmaBox tma_box(const void* map, const void* smem, int rank, const char* op) {
  const TensorMap& t = tensor_map(map, op);
  if (rank != t.rank) fail("%s: a %dD copy with a rank-%d tensor map", op, rank, t.rank);
  const uint32_t n = box_bytes(t);
  const uint32_t at = smem_offset(smem, n, op);
  check_box_smem(t, at, op);
  return {t, n, at};
}

inline void tma_prefetch(const void* map) { tensor_map(map, "prefetch.tensormap"); }
inline void tma_load(void* dst, const void* map, void* bar, const int* coords, int rank) {
  const char* op = "cp.async.bulk.tensor (load)";
  const TmaBox box = tma_box(map, dst, rank, op);
  const TensorMap& t = box.t;
  const uint32_t n = box.n, at = box.at;
  mbar(bar, op);
  check_not_inflight(at, at + n, op);
  PendingLoad p{static_cast<char*>(dst), std::vector<char>(n), bar, at};
  for_each_box_element(t, coords, at, [&](const char* src, uint32_t off) {
    if (src) {
      memcpy(&p.bytes[off], src, t.elem_bytes);
    } else if (t.nan_fill) {
      const uint64_t nan = t.bf16 ? 0x7fc0 : t.f16 ? 0x7e00 : t.elem_bytes == 4 ? 0x7fc00000u : 0x7ff8000000000000ull;
      memcpy(&p.bytes[off], &nan, t.elem_bytes);
    } else {
      memset(&p.bytes[off], 0, t.elem_bytes);
    }
  });
  pending_loads.push_back(std::move(p));
  ++arrivals;
}
inline void deliver(PendingLoad& p) {
  check_not_inflight(p.at, p.at + static_cast<uint32_t>(p.bytes.size()), "a TMA load landing");
  memcpy(p.dst, p.bytes.data(), p.bytes.size());
  mbar_complete_tx(p.bar, static_cast<uint32_t>(p.bytes.size()));
}
inline void deliver_loads_of(const void* bar) {
  for (size_t i = 0; i < pending_loads.size();) {
    if (pending_loads[i].bar == bar) {
      PendingLoad p = std::move(pending_loads[i]);
      pending_loads.erase(pending_loads.begin() + static_cast<long>(i));
      deliver(p);
    } else {
      ++i;
    }
  }
}

// Commit groups, kept per thread alike for TMA stores (cp.async.bulk) and wgmma: an operation's group is
// -1 until a commit gives every uncommitted one the number of the commits before it; wait_group(n)
// retires the committed groups but the newest n.
template <class Op>
inline void commit_group(std::vector<Op>& ops, long& groups) {
  for (Op& o : ops)
    if (o.group < 0) o.group = groups;
  ++groups;
}
inline bool group_retired(long group, long groups, int n) { return group >= 0 && group < groups - n; }

struct PendingStore {
  const char* src;
  std::vector<char> copy;  // the source bytes at issue
  long group;
};
struct BulkThread {
  std::vector<PendingStore> stores;
  long groups = 0;
};
inline BulkThread bulk_threads[1024];

inline void tma_store(const void* map, const void* src, const int* coords, int rank) {
  const char* op = "cp.async.bulk.tensor (store)";
  const TmaBox box = tma_box(map, src, rank, op);
  const TensorMap& t = box.t;
  const uint32_t n = box.n, at = box.at;
  const char* s = static_cast<const char*>(src);
  for_each_box_element(t, coords, at, [&](const char* dst, uint32_t off) {
    if (dst) memcpy(const_cast<char*>(dst), s + off, t.elem_bytes);
  });
  bulk_threads[threadIdx.x].stores.push_back({s, std::vector<char>(s, s + n), -1});
  ++arrivals;
}
inline void bulk_commit() {
  BulkThread& b = bulk_threads[threadIdx.x];
  commit_group(b.stores, b.groups);
}
inline void bulk_wait(int n) {
  BulkThread& b = bulk_threads[threadIdx.x];
  for (size_t i = 0; i < b.stores.size();) {
    PendingStore& p = b.stores[i];
    if (group_retired(p.group, b.groups, n)) {
      if (memcmp(p.src, p.copy.data(), p.copy.size()) != 0)
        fail("the shared memory a TMA store reads changed before cp.async.bulk.wait_group.read retired it");
      b.stores.erase(b.stores.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
}
inline void fence_proxy_async() {}

// ---- wgmma -------------------------------------------------------------------------------------
constexpr uint32_t kPoison = 0x7fdead00u;  // a quiet NaN: an accumulator of an in-flight wgmma

struct Operand {  // a decoded matrix descriptor
  uint32_t start, lbo, sbo, span;
  int major;
};
inline Operand decode_desc(uint64_t desc, int major, const char* which) {
  const uint64_t reserved = desc & ((uint64_t(3) << 14) | (uint64_t(3) << 30) | (uint64_t(7) << 46) |
                                    (uint64_t(0x3ff) << 52));
  if (reserved) fail("wgmma: descriptor of %s 0x%016llx has reserved bits set", which, (unsigned long long)desc);
  if ((desc >> 49) & 7)
    fail("wgmma: descriptor of %s has a base offset: not emulated (start the operand in the first row of its "
         "swizzle atom)", which);
  static const uint32_t spans[4] = {0, 128, 64, 32};
  Operand o{static_cast<uint32_t>(desc & 0x3fff) << 4, static_cast<uint32_t>((desc >> 16) & 0x3fff) << 4,
            static_cast<uint32_t>((desc >> 32) & 0x3fff) << 4, spans[desc >> 62], major};
  if (o.span != 0) {
    if (o.start % (8 * o.span) >= o.span)
      fail("wgmma: %s starts at %u, past the first row of its %u-byte swizzle atom (base offset 0 assumes the first "
           "row)", which, o.start, 8 * o.span);
    if (major == 0 && o.start % o.span + 32 > o.span)
      fail("wgmma: the 16 K elements of %s (start %u) cross the %u-byte swizzle row", which, o.start, o.span);
  }
  return o;
}
// Shared-memory address of element (x, k): x = m for A, n for B (9.7.15.5.1.2).
inline uint32_t element_addr(const Operand& o, int x, int k) {
  uint32_t off;
  if (o.major == 0) {  // K-major
    off = o.span == 0 ? (x % 8) * 16 + (x / 8) * o.sbo + (k % 8) * 2 + (k / 8) * o.lbo
                      : (x % 8) * o.span + (x / 8) * o.sbo + k * 2;
  } else {  // MN-major
    const int e = o.span == 0 ? 8 : static_cast<int>(o.span) / 2;
    off = o.span == 0 ? (k % 8) * 16 + (k / 8) * o.lbo + (x % 8) * 2 + (x / 8) * o.sbo
                      : (k % 8) * o.span + (k / 8) * o.sbo + (x % e) * 2 + (x / e) * o.lbo;
  }
  return swizzle(o.start + off, o.span);
}
inline float read_element(uint32_t addr, bool bf16) {
  if (addr + 2 > emu_dyn_smem_bytes)
    fail("wgmma: operand element at shared-memory address %u is outside the dynamic shared memory (%zu bytes)",
         addr, emu_dyn_smem_bytes);
  uint16_t h;
  memcpy(&h, emu_dyn_smem + addr, 2);
  return bits_to_float(h, bf16);
}

// What one thread of the warpgroup publishes for the others.
struct Issue {
  uint64_t desc_a, desc_b;
  int n, bf16, a_in_regs, scale_d, scale_a, scale_b, trans_a, trans_b;
  uint32_t a[4];
};
inline Issue wg_issue[8][128];
inline int wg_count[8];
inline unsigned wg_gen[8];
inline void warpgroup_barrier() {
  const int w = static_cast<int>(threadIdx.x / 128);
  if (blockDim.x < 128u * (w + 1)) fail("wgmma: warpgroup %d of a %u-thread block is incomplete", w, blockDim.x);
  ++arrivals;
  const unsigned g = wg_gen[w];
  if (++wg_count[w] == 128) {
    wg_count[w] = 0;
    ++wg_gen[w];
    return;
  }
  while (wg_gen[w] == g) yield();
}

// This thread's accumulators of w, from its operands as they are now in shared memory.
inline void wgmma_compute(const Wgmma& w, float* out) {
  const int t = static_cast<int>(threadIdx.x % 128), warp = t / 32, g = (t % 32) / 4, q = t % 4;
  float a[2][16];
  if (w.a_in_regs) {
    memcpy(a, w.a_rows, sizeof a);
  } else {
    const Operand oa = decode_desc(w.desc_a, w.trans_a, "A");
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 16; ++k) a[h][k] = read_element(element_addr(oa, 16 * warp + g + 8 * h, k), w.bf16);
  }
  const Operand ob = decode_desc(w.desc_b, w.trans_b, "B");
  for (int i = 0; i < w.n / 2; ++i) {
    const int h = (i >> 1) & 1, col = 8 * (i >> 2) + 2 * q + (i & 1);
    float acc = w.scale_d ? w.base[i] : 0.f;
    for (int k = 0; k < 16; ++k) {
      const float b = read_element(element_addr(ob, col, k), w.bf16);
      acc = fmaf(w.scale_a * a[h][k], w.scale_b * b, acc);
    }
    out[i] = acc;
  }
}
inline void operand_range(uint64_t desc, int major, int rows, const char* which, uint32_t& lo, uint32_t& hi) {
  const Operand o = decode_desc(desc, major, which);
  lo = ~0u;
  hi = 0;
  for (int x = 0; x < rows; ++x)
    for (int k = 0; k < 16; ++k) {
      const uint32_t a = element_addr(o, x, k);
      lo = std::min(lo, a);
      hi = std::max(hi, a + 2);
    }
}

inline void wgmma_fence() { wg_threads[threadIdx.x].fenced = true; }

template <class T, int N>
inline void wgmma(float* d, const uint32_t* a_regs, uint64_t desc_a, uint64_t desc_b, int scale_d, int scale_a,
                  int scale_b, int trans_a, int trans_b) {
  WgThread& me = wg_threads[threadIdx.x];
  if (!me.fenced)
    fail("wgmma.mma_async without a wgmma.fence before it (wgmma_fence: before the first wgmma and after each "
         "wgmma.wait_group)");
  const int w = static_cast<int>(threadIdx.x / 128), t = static_cast<int>(threadIdx.x % 128);
  const bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  Issue mine{desc_a, desc_b, N, bf16, a_regs != nullptr, scale_d, scale_a, scale_b, trans_a, trans_b, {0, 0, 0, 0}};
  if (a_regs) memcpy(mine.a, a_regs, sizeof mine.a);
  wg_issue[w][t] = mine;
  warpgroup_barrier();
  const Issue& lead = wg_issue[w][0];
  if (lead.desc_a != mine.desc_a || lead.desc_b != mine.desc_b || lead.n != N || lead.bf16 != mine.bf16 ||
      lead.a_in_regs != mine.a_in_regs || lead.scale_d != scale_d || lead.scale_a != scale_a ||
      lead.scale_b != scale_b || lead.trans_a != trans_a || lead.trans_b != trans_b)
    fail("wgmma.mma_async: operands differ between thread %d and thread %d of warpgroup %d (.sync.aligned: one "
         "instruction for the warpgroup)", 128 * w, static_cast<int>(threadIdx.x), w);
  Wgmma e;
  e.d = d;
  e.n = N;
  e.bf16 = bf16;
  e.a_in_regs = a_regs != nullptr;
  e.desc_a = desc_a;
  e.desc_b = desc_b;
  e.scale_d = scale_d;
  e.scale_a = scale_a;
  e.scale_b = scale_b;
  e.trans_a = trans_a;
  e.trans_b = trans_b;
  const int warp = t / 32, g = (t % 32) / 4;
  if (a_regs) {
    // a[r] of lane 4g' + q' holds (g' + 8 (r & 1), 2q' + 8 (r >> 1) + half): gather this thread's rows
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 16; ++k) {
        const Issue& src = wg_issue[w][32 * warp + 4 * g + (k % 8) / 2];
        const uint32_t r = src.a[2 * (k / 8) + h];
        e.a_rows[h][k] = bits_to_float(static_cast<uint16_t>((k & 1) ? r >> 16 : r & 0xffff), bf16);
      }
    e.a_regs = a_regs;
    memcpy(e.a_copy, a_regs, sizeof e.a_copy);
  } else {
    operand_range(desc_a, trans_a, 64, "A", e.lo[0], e.hi[0]);
  }
  operand_range(desc_b, trans_b, N, "B", e.lo[1], e.hi[1]);
  for (const PendingLoad& p : pending_loads)
    for (int o = a_regs ? 1 : 0; o < 2; ++o)
      if (e.lo[o] < p.at + p.bytes.size() && p.at < e.hi[o])
        fail("wgmma.mma_async reads shared memory [%u, %u) (operand %c) that a TMA load has not delivered yet: wait "
             "on its mbarrier first", e.lo[o], e.hi[o], o ? 'B' : 'A');
  e.op = me.issued++;
  inflight_ops[{w, e.op}] = Ranges{{e.lo[0], e.lo[1]}, {e.hi[0], e.hi[1]}};
  warpgroup_barrier();  // wg_issue may be reused; every thread has recorded the operation
  // the accumulators' input: the newest in-flight wgmma on the same registers, else the registers
  const Wgmma* prev = nullptr;
  for (const Wgmma& p : me.inflight) {
    const bool same = p.d == d && p.n == N;
    if (!same && p.d < d + N / 2 && d < p.d + p.n / 2)
      fail("wgmma.mma_async: accumulators overlap those of an in-flight wgmma without being the same registers");
    if (same) prev = &p;
  }
  e.base.resize(N / 2);
  for (int i = 0; i < N / 2; ++i) e.base[i] = prev ? prev->result[i] : d[i];
  e.result.resize(N / 2);
  wgmma_compute(e, e.result.data());
  for (int i = 0; i < N / 2; ++i) memcpy(&d[i], &kPoison, 4);
  me.inflight.push_back(std::move(e));
}

inline void wgmma_commit() {
  WgThread& me = wg_threads[threadIdx.x];
  commit_group(me.inflight, me.groups);
}

inline void wgmma_wait(int n) {
  WgThread& me = wg_threads[threadIdx.x];
  std::vector<Wgmma> retired, kept;
  for (Wgmma& w : me.inflight) (group_retired(w.group, me.groups, n) ? retired : kept).push_back(std::move(w));
  for (const Wgmma& w : retired) {
    std::vector<float> again(w.n / 2);
    wgmma_compute(w, again.data());
    if (memcmp(again.data(), w.result.data(), again.size() * 4) != 0)
      fail("wgmma: the shared memory it reads changed between the wgmma and the wgmma.wait_group that retired it");
    if (w.a_in_regs && memcmp(w.a_regs, w.a_copy, sizeof w.a_copy) != 0)
      fail("wgmma: its A registers changed before the wgmma.wait_group that retired it");
    inflight_ops.erase({static_cast<int>(threadIdx.x / 128), w.op});
  }
  // the registers take the newest retired result, unless a wgmma still in flight accumulates into them
  for (size_t i = retired.size(); i-- > 0;) {
    const Wgmma& w = retired[i];
    bool later = false;
    for (size_t j = i + 1; j < retired.size(); ++j) later |= retired[j].d == w.d;
    for (const Wgmma& k : kept) later |= k.d == w.d;
    if (later) continue;
    for (int r = 0; r < w.n / 2; ++r) {
      uint32_t u;
      memcpy(&u, &w.d[r], 4);
      if (u != kPoison) fail("wgmma: accumulator d[%d] was written while its wgmma was in flight", r);
    }
    memcpy(w.d, w.result.data(), w.result.size() * 4);
  }
  me.inflight = std::move(kept);
  me.fenced = false;
}

// ---- hooks -------------------------------------------------------------------------------------
inline void block_start() {
  mbars.clear();
  pending_loads.clear();
  inflight_ops.clear();
  for (Wait& w : waits) w = Wait();
  for (WgThread& t : wg_threads) t = WgThread();
  for (BulkThread& b : bulk_threads) b = BulkThread();
  for (int i = 0; i < 8; ++i) wg_count[i] = 0;
}
inline bool stall() {
  if (pending_loads.empty()) return false;
  std::vector<PendingLoad> all = std::move(pending_loads);
  pending_loads.clear();
  for (PendingLoad& p : all) deliver(p);
  return true;
}
inline void deadlock() {
  const void* last = nullptr;
  uint32_t last_parity = 0;
  int first = -1;
  auto flush = [&](int end) {
    if (first < 0) return;
    const Mbar& m = mbars[last];
    const char* base = static_cast<const char*>(last);
    const bool in_smem = emu_dyn_smem && base >= emu_dyn_smem && base < emu_dyn_smem + emu_dyn_smem_bytes;
    fprintf(stderr,
            "  threads %d..%d wait for parity %u of the mbarrier at %s%ld: phase %u (parity %u), %u of %u arrivals "
            "pending, tx-count %lld\n",
            first, end - 1, last_parity, in_smem ? "smem+" : "", in_smem ? (long)(base - emu_dyn_smem) : (long)0,
            m.phase, m.phase & 1, m.pending, m.expected, (long long)m.tx);
    first = -1;
  };
  for (int i = 0; i < static_cast<int>(blockDim.x) && i < 1024; ++i) {
    const Wait& w = waits[i];
    if (w.bar != last || w.parity != last_parity || w.bar == nullptr) flush(i);
    if (w.bar && first < 0) {
      first = i;
      last = w.bar;
      last_parity = w.parity;
    }
  }
  flush(static_cast<int>(std::min(blockDim.x, 1024u)));
  for (int i = 0; i < 8; ++i)
    if (wg_count[i]) fprintf(stderr, "  warpgroup %d: %d of 128 threads at a wgmma\n", i, wg_count[i]);
}
inline bool install() {
  on_block_start = block_start;
  on_stall = stall;
  on_deadlock = deadlock;
  return true;
}
inline const bool installed = install();

}}  // namespace emu::sm90
