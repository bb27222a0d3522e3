// The per-edge loop of glasslab's fused convolution (glasslab/models/fused_kernel.py).
//
// For every input order l_I of a layer (a "block": all its pairs (l_I, l_O) at once) and every centre i:
//   S[i, u, c] = sum_{e: centre(e) = i} ReLU(w[e, (u, l_O, p)]) * T_e[u, c],  T_e[u, c] = sum_a x[j(e), u, a] G[e, a, c]
// (x: regrouped node features, G: the cached coupling block of l_I with columns c = (l_O, m, p),
// w[e] = b + h[e] A: the radial MLP's last Linear applied here to its hidden features h[e]), and the
// gradients of S with respect to x, h, A and b. Torch ops must write the E x (U, d_O, P) products of
// every pair, and the E x W radial weights, to memory, and read them back in the backward pass; here
// they live in small buffers per edge, so the memory traffic is the cached geometry read once per
// pass. Both passes run in parallel over centres (no atomics).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <array>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

struct Block {      // the pairs (l_I, l_O) of one input order l_I, all l_O at once
  int64_t x_off;    // first column of the l_I block of x, laid out (u, a)
  int64_t U;        // input channels of order l_I
  int64_t d_in;     // 2 l_I + 1
  int64_t R;        // columns (l_O, m, p) of the coupling block G
  int64_t w_off;    // first column of the block's weights in w, laid out (u, l_O, p)
  int64_t Wb;       // weights per channel: the sum of P over l_O
  const int32_t* local;  // (R,): column c = (l_O, m, p) is weighted by w[w_off + u Wb + local[c]]
  // The weight gradient's bins (W_b <= 16, R <= 64) as K <= 2 l_O,max + 1 permutations of the columns:
  // the k-th column summed into bin l is bin_src[16 k + l] (lanes from the first or second 32 columns,
  // bin_high[k]); bin_some[k]: the bins that have a k-th column.
  int64_t K;
  std::vector<int32_t> bin_src;
  std::vector<uint16_t> bin_high, bin_some;
};

void plan_bins(Block& b) {
  std::vector<std::vector<int32_t>> columns(b.Wb);
  for (int64_t c = 0; c < b.R; ++c) columns[b.local[c]].push_back((int32_t)c);
  b.K = 0;
  for (const auto& bin : columns) b.K = std::max<int64_t>(b.K, bin.size());
  b.bin_src.assign(16 * b.K, 0);
  b.bin_high.assign(b.K, 0);
  b.bin_some.assign(b.K, 0);
  for (int64_t l = 0; l < b.Wb && l < 16; ++l)
    for (size_t k = 0; k < columns[l].size(); ++k) {
      b.bin_src[16 * k + l] = columns[l][k] & 31;
      if (columns[l][k] >= 32) b.bin_high[k] |= (uint16_t)(1u << l);
      b.bin_some[k] |= (uint16_t)(1u << l);
    }
}

std::vector<Block> read_blocks(const torch::Tensor& table, const std::vector<torch::Tensor>& local) {
  TORCH_CHECK(table.dim() == 2 && table.size(1) == 6 && table.scalar_type() == torch::kInt64,
              "block table must be (blocks, 6) int64");
  TORCH_CHECK((int64_t)local.size() == table.size(0), "one local weight index per block");
  auto t = table.contiguous();
  auto a = t.accessor<int64_t, 2>();
  std::vector<Block> blocks;
  for (int64_t k = 0; k < t.size(0); ++k) {
    const auto& index = local[k];
    TORCH_CHECK(index.scalar_type() == torch::kInt32 && index.is_contiguous() && index.numel() == a[k][3],
                "local weight index: contiguous int32 (R,)");
    Block b{a[k][0], a[k][1], a[k][2], a[k][3], a[k][4], a[k][5], index.data_ptr<int32_t>()};
    for (int64_t c = 0; c < b.R; ++c)
      TORCH_CHECK(b.local[c] >= 0 && b.local[c] < b.Wb, "local weight index out of range");
    plan_bins(b);
    blocks.push_back(std::move(b));
  }
  return blocks;
}

int64_t buffer_size(const std::vector<Block>& blocks) {
  int64_t n = 1;
  for (const auto& b : blocks) n = std::max(n, b.U * b.R);
  return n;
}

// T[u, c] = sum_a x[u, a] G[a, c]: the CG-coupled messages of every channel and every column.
// With d_in fixed at compile time the sum over a stays in registers and the loop over the
// columns c is vectorised.
template <typename T, int D_IN>
inline void couple_fixed(const T* __restrict__ x, const T* __restrict__ g, int64_t U, int64_t R, T* __restrict__ t) {
  for (int64_t u = 0; u < U; ++u) {
    T xu[D_IN];
    for (int a = 0; a < D_IN; ++a) xu[a] = x[u * D_IN + a];
    T* __restrict__ tu = t + u * R;
    for (int64_t c = 0; c < R; ++c) {
      T acc = xu[0] * g[c];
      for (int a = 1; a < D_IN; ++a) acc += xu[a] * g[a * R + c];
      tu[c] = acc;
    }
  }
}

#ifdef __AVX512F__
// The same, 16 columns at a time with a masked last chunk (no scalar remainder).
template <int D_IN>
inline void couple_fixed_avx512(const float* __restrict__ x, const float* __restrict__ g, int64_t U, int64_t R,
                                float* __restrict__ t) {
  for (int64_t c = 0; c < R; c += 16) {
    const int64_t left = R - c;
    const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    __m512 rows[D_IN];
    for (int a = 0; a < D_IN; ++a) rows[a] = _mm512_maskz_loadu_ps(mask, g + a * R + c);
    for (int64_t u = 0; u < U; ++u) {
      __m512 acc = _mm512_mul_ps(_mm512_set1_ps(x[u * D_IN]), rows[0]);
      for (int a = 1; a < D_IN; ++a) acc = _mm512_fmadd_ps(_mm512_set1_ps(x[u * D_IN + a]), rows[a], acc);
      _mm512_mask_storeu_ps(t + u * R + c, mask, acc);
    }
  }
}
#endif

template <typename T>
inline void couple(const T* __restrict__ x, const T* __restrict__ g, const Block& b, T* __restrict__ t) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    switch (b.d_in) {
      case 1: return couple_fixed_avx512<1>(x, g, b.U, b.R, t);
      case 3: return couple_fixed_avx512<3>(x, g, b.U, b.R, t);
      case 5: return couple_fixed_avx512<5>(x, g, b.U, b.R, t);
      case 7: return couple_fixed_avx512<7>(x, g, b.U, b.R, t);
    }
  }
#endif
  switch (b.d_in) {
    case 1: return couple_fixed<T, 1>(x, g, b.U, b.R, t);
    case 3: return couple_fixed<T, 3>(x, g, b.U, b.R, t);
    case 5: return couple_fixed<T, 5>(x, g, b.U, b.R, t);
    case 7: return couple_fixed<T, 7>(x, g, b.U, b.R, t);
    case 9: return couple_fixed<T, 9>(x, g, b.U, b.R, t);
  }
  for (int64_t u = 0; u < b.U; ++u) {
    T* tu = t + u * b.R;
    for (int64_t c = 0; c < b.R; ++c) tu[c] = 0;
    for (int64_t a = 0; a < b.d_in; ++a) {
      const T xv = x[u * b.d_in + a];
      const T* __restrict__ row = g + a * b.R;
      for (int64_t c = 0; c < b.R; ++c) tu[c] += xv * row[c];
    }
  }
}

template <typename T>
inline T relu(T value) {
  return value > 0 ? value : T(0);
}

// out[c] = ReLU(w[local[c]]) in[c] (ADD: out[c] += ...), c < R: one channel's radial weights, each
// repeated over the 2 l_O + 1 values of m, times a row of the block.
template <bool ADD, typename T>
inline void weigh(const T* __restrict__ w, const Block& b, const T* __restrict__ in, T* __restrict__ out);

#ifdef __AVX512F__
inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// The weights in one register, spread by a permutation per 16 columns (compilers turn the scalar
// loop into memory gathers, 3x slower, measured on the CPU that built glasslab) and used at once:
// no spread row is stored and read back.
template <bool ADD>
inline void weigh_avx512(const float* __restrict__ w, const Block& b, const float* __restrict__ in,
                         float* __restrict__ out) {
  const __m512 weights = _mm512_max_ps(_mm512_maskz_loadu_ps(first_lanes(b.Wb), w), _mm512_setzero_ps());
  for (int64_t c = 0; c < b.R; c += 16) {
    const __mmask16 mask = first_lanes(b.R - c);
    const __m512 spread = _mm512_permutexvar_ps(_mm512_maskz_loadu_epi32(mask, b.local + c), weights);
    __m512 value = _mm512_mul_ps(spread, _mm512_maskz_loadu_ps(mask, in + c));
    if constexpr (ADD) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, out + c));
    _mm512_mask_storeu_ps(out + c, mask, value);
  }
}
#endif

template <bool ADD, typename T>
inline void weigh(const T* __restrict__ w, const Block& b, const T* __restrict__ in, T* __restrict__ out) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (b.Wb <= 16) return weigh_avx512<ADD>(w, b, in, out);
  }
#endif
  for (int64_t c = 0; c < b.R; ++c) {
    const T value = relu(w[b.local[c]]) * in[c];
    out[c] = ADD ? out[c] + value : value;
  }
}

// gw[k] = sum over c with local[c] = k of t[c] g[c], k < W_b: one channel's weight gradient (each
// bin written once per edge, so that the gradient needs no zero-filling)
template <typename T>
inline void sum_into_bins(const T* __restrict__ t, const T* __restrict__ g, const Block& b, T* __restrict__ gw) {
  for (int64_t k = 0; k < b.Wb; ++k) gw[k] = 0;
  for (int64_t c = 0; c < b.R; ++c) gw[b.local[c]] += t[c] * g[c];
}

#ifdef __AVX512F__
// The same with the products in four registers and the W_b <= 16 bins in one: K permutations of the
// products, each adding at most one column into every bin (one broadcast and masked add per column
// was 3x slower).
template <>
inline void sum_into_bins<float>(const float* __restrict__ t, const float* __restrict__ g, const Block& b,
                                 float* __restrict__ gw) {
  if (b.Wb > 16 || b.R > 64) {
    for (int64_t k = 0; k < b.Wb; ++k) gw[k] = 0;
    for (int64_t c = 0; c < b.R; ++c) gw[b.local[c]] += t[c] * g[c];
    return;
  }
  __m512 p[4];
  for (int q = 0; q < 4; ++q) {
    const __mmask16 mask = first_lanes(b.R - 16 * q);
    p[q] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, t + 16 * q), _mm512_maskz_loadu_ps(mask, g + 16 * q));
  }
  __m512 sum = _mm512_setzero_ps();
  for (int64_t k = 0; k < b.K; ++k) {
    const __m512i index = _mm512_loadu_si512(b.bin_src.data() + 16 * k);
    __m512 column = _mm512_permutex2var_ps(p[0], index, p[1]);
    if (b.R > 32) column = _mm512_mask_mov_ps(column, b.bin_high[k], _mm512_permutex2var_ps(p[2], index, p[3]));
    sum = _mm512_mask_add_ps(sum, b.bin_some[k], sum, column);
  }
  _mm512_mask_storeu_ps(gw, first_lanes(b.Wb), sum);
}
#endif

// sum_c a[c] b[c]
template <typename T>
inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < n; ++c) sum += a[c] * b[c];
  return sum;
}

#ifdef __AVX512F__
// With a masked last chunk: the compiler's scalar remainder (up to 15 dependent additions for
// the widths R = 39, 50, 51 of lmax = 3) took most of the time of the loop above.
template <>
inline float dot<float>(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  __m512 sum = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) sum = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), sum);
  if (c < n) {
    const __mmask16 mask = (__mmask16)((1u << (n - c)) - 1);
    sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + c), _mm512_maskz_loadu_ps(mask, b + c), sum);
  }
  return _mm512_reduce_add_ps(sum);
}
#endif

// gx[u, a] += sum_c G[a, c] q[u, c], u < U, a < d_in: the feature gradient of one block and edge
// (g: G (d_in, R), q: (U, R), gx: (U, d_in)).
template <typename T>
inline void feature_gradient_loops(const T* __restrict__ g, const T* __restrict__ q, const Block& b,
                                   T* __restrict__ gx) {
  for (int64_t u = 0; u < b.U; ++u)
    for (int64_t a = 0; a < b.d_in; ++a) gx[u * b.d_in + a] += dot(g + a * b.R, q + u * b.R, b.R);
}

template <typename T>
inline void feature_gradient(const T* __restrict__ g, const T* __restrict__ q, const Block& b, T* __restrict__ gx) {
  feature_gradient_loops(g, q, b, gx);
}

#if defined(__AVX512F__) && defined(__AVX512VL__)
// The sums of eight registers in the eight lanes of one: each register halved, then two rounds of
// pairwise horizontal additions (about 4 instructions per register instead of the 8 dependent
// shuffles and additions of reducing each alone).
inline __m256 sums_of_8(const __m512* v) {
  __m256 h[8];
  for (int a = 0; a < 8; ++a)
    h[a] = _mm256_add_ps(_mm512_castps512_ps256(v[a]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[a]), 1)));
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(h[4], h[5]), _mm256_hadd_ps(h[6], h[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// The same, a channel's d_in sums reduced together and added to gx with one masked store.
template <int D_IN>
inline void feature_gradient_avx512(const float* __restrict__ g, const float* __restrict__ q, int64_t U, int64_t R,
                                    float* __restrict__ gx) {
  const __mmask8 lanes = (__mmask8)((1u << D_IN) - 1);
  for (int64_t u = 0; u < U; ++u) {
    __m512 acc[8];
    for (int a = 0; a < 8; ++a) acc[a] = _mm512_setzero_ps();
    for (int64_t c = 0; c < R; c += 16) {
      const __mmask16 mask = first_lanes(R - c);
      const __m512 qv = _mm512_maskz_loadu_ps(mask, q + u * R + c);
      for (int a = 0; a < D_IN; ++a) acc[a] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, g + a * R + c), qv, acc[a]);
    }
    float* out = gx + u * D_IN;
    _mm256_mask_storeu_ps(out, lanes, _mm256_add_ps(_mm256_maskz_loadu_ps(lanes, out), sums_of_8(acc)));
  }
}

template <>
inline void feature_gradient<float>(const float* __restrict__ g, const float* __restrict__ q, const Block& b,
                                    float* __restrict__ gx) {
  switch (b.d_in) {
    case 3: return feature_gradient_avx512<3>(g, q, b.U, b.R, gx);
    case 5: return feature_gradient_avx512<5>(g, q, b.U, b.R, gx);
    case 7: return feature_gradient_avx512<7>(g, q, b.U, b.R, gx);
  }
  feature_gradient_loops(g, q, b, gx);
}
#endif

// w[r] = b[r] + sum_k h[k] A[k, r], r < W: the radial MLP's last Linear for one edge (A is the
// transposed weight, (H, W), so that each hidden feature scales one contiguous row)
template <typename T>
inline void last_linear_loops(const T* __restrict__ h, const T* __restrict__ A, const T* __restrict__ b, int64_t H,
                              int64_t W, T* __restrict__ w) {
  for (int64_t r = 0; r < W; ++r) w[r] = b[r];
  for (int64_t k = 0; k < H; ++k) {
    const T hk = h[k];
    const T* __restrict__ row = A + k * W;
    for (int64_t r = 0; r < W; ++r) w[r] += hk * row[r];
  }
}

template <typename T>
inline void last_linear(const T* __restrict__ h, const T* __restrict__ A, const T* __restrict__ b, int64_t H, int64_t W,
                        T* __restrict__ w) {
  last_linear_loops(h, A, b, H, W, w);
}

// The gradients through it for one edge, given gw = dS/dw (W,): gh[k] = sum_r A[k, r] gw[r] (At = A
// transposed, (W, H)), and gA[k, r] += h[k] gw[r], gb[r] += gw[r] (summed over the thread's edges).
template <typename T>
inline void last_linear_backward(const T* __restrict__ h, const T* __restrict__ At, const T* __restrict__ gw, int64_t H,
                                 int64_t W, T* __restrict__ gh, T* __restrict__ gA, T* __restrict__ gb) {
  for (int64_t k = 0; k < H; ++k) gh[k] = 0;
  for (int64_t r = 0; r < W; ++r) {
    const T g = gw[r];
    const T* __restrict__ row = At + r * H;
    for (int64_t k = 0; k < H; ++k) gh[k] += g * row[k];
  }
  for (int64_t k = 0; k < H; ++k) {
    const T hk = h[k];
    T* __restrict__ gAk = gA + k * W;
    for (int64_t r = 0; r < W; ++r) gAk[r] += hk * gw[r];
  }
  for (int64_t r = 0; r < W; ++r) gb[r] += gw[r];
}

#ifdef __AVX512F__
// The same with all W <= 192 outputs in NR registers (all sums independent, each row of A loaded once);
// the loop above loads and stores w for every k.
template <int NR>
inline void last_linear_registers(const float* __restrict__ h, const float* __restrict__ A, const float* __restrict__ b,
                                  int64_t H, int64_t W, float* __restrict__ w) {
  const __mmask16 tail = first_lanes(W - 16 * (NR - 1));
  __m512 acc[NR];
#pragma GCC unroll 16
  for (int q = 0; q < NR - 1; ++q) acc[q] = _mm512_loadu_ps(b + 16 * q);
  acc[NR - 1] = _mm512_maskz_loadu_ps(tail, b + 16 * (NR - 1));
  for (int64_t k = 0; k < H; ++k) {
    const __m512 hk = _mm512_set1_ps(h[k]);
    const float* row = A + k * W;
#pragma GCC unroll 16
    for (int q = 0; q < NR - 1; ++q) acc[q] = _mm512_fmadd_ps(hk, _mm512_loadu_ps(row + 16 * q), acc[q]);
    acc[NR - 1] = _mm512_fmadd_ps(hk, _mm512_maskz_loadu_ps(tail, row + 16 * (NR - 1)), acc[NR - 1]);
  }
#pragma GCC unroll 16
  for (int q = 0; q < NR - 1; ++q) _mm512_storeu_ps(w + 16 * q, acc[q]);
  _mm512_mask_storeu_ps(w + 16 * (NR - 1), tail, acc[NR - 1]);
}

using LastLinear = void (*)(const float*, const float*, const float*, int64_t, int64_t, float*);

template <size_t... NR>
constexpr std::array<LastLinear, sizeof...(NR)> register_variants(std::index_sequence<NR...>) {
  return {&last_linear_registers<NR + 1>...};
}

template <>
inline void last_linear<float>(const float* __restrict__ h, const float* __restrict__ A, const float* __restrict__ b,
                               int64_t H, int64_t W, float* __restrict__ w) {
  static constexpr auto variants = register_variants(std::make_index_sequence<12>{});
  const int64_t registers = (W + 15) / 16;
  if (registers >= 1 && registers <= 12) return variants[registers - 1](h, A, b, H, W, w);
  last_linear_loops(h, A, b, H, W, w);
}
// With H <= 16 the hidden gradient is one register, summed over r in four accumulators.
template <>
inline void last_linear_backward<float>(const float* __restrict__ h, const float* __restrict__ At,
                                        const float* __restrict__ gw, int64_t H, int64_t W, float* __restrict__ gh,
                                        float* __restrict__ gA, float* __restrict__ gb) {
  if (H > 16) {
    for (int64_t k = 0; k < H; ++k) gh[k] = 0;
    for (int64_t r = 0; r < W; ++r)
      for (int64_t k = 0; k < H; ++k) gh[k] += gw[r] * At[r * H + k];
  } else {
    const __mmask16 lanes = first_lanes(H);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t r = 0;
    for (; r + 4 <= W; r += 4) {
      s0 = _mm512_fmadd_ps(_mm512_set1_ps(gw[r]), _mm512_maskz_loadu_ps(lanes, At + r * H), s0);
      s1 = _mm512_fmadd_ps(_mm512_set1_ps(gw[r + 1]), _mm512_maskz_loadu_ps(lanes, At + (r + 1) * H), s1);
      s2 = _mm512_fmadd_ps(_mm512_set1_ps(gw[r + 2]), _mm512_maskz_loadu_ps(lanes, At + (r + 2) * H), s2);
      s3 = _mm512_fmadd_ps(_mm512_set1_ps(gw[r + 3]), _mm512_maskz_loadu_ps(lanes, At + (r + 3) * H), s3);
    }
    for (; r < W; ++r) s0 = _mm512_fmadd_ps(_mm512_set1_ps(gw[r]), _mm512_maskz_loadu_ps(lanes, At + r * H), s0);
    _mm512_mask_storeu_ps(gh, lanes, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  }
  for (int64_t k = 0; k < H; ++k) {
    const __m512 hk = _mm512_set1_ps(h[k]);
    float* gAk = gA + k * W;
    for (int64_t r = 0; r < W; r += 16) {
      const __mmask16 m = first_lanes(W - r);
      _mm512_mask_storeu_ps(gAk + r, m, _mm512_fmadd_ps(hk, _mm512_maskz_loadu_ps(m, gw + r), _mm512_maskz_loadu_ps(m, gAk + r)));
    }
  }
  for (int64_t r = 0; r < W; r += 16) {
    const __mmask16 m = first_lanes(W - r);
    _mm512_mask_storeu_ps(gb + r, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, gw + r), _mm512_maskz_loadu_ps(m, gb + r)));
  }
}
#endif

template <typename T>
struct Views {
  const T* x;       // (N, D)
  const T* hidden;  // (E, H)
  const T* A;       // (H, W)
  const T* b;       // (W,)
  std::vector<const T*> g;
  int64_t D, H, W, N;
  Views(const torch::Tensor& x_, const std::vector<torch::Tensor>& coupling, const torch::Tensor& hidden_,
        const torch::Tensor& A_, const torch::Tensor& b_)
      : x(x_.data_ptr<T>()), hidden(hidden_.data_ptr<T>()), A(A_.data_ptr<T>()), b(b_.data_ptr<T>()),
        D(x_.size(1)), H(A_.size(0)), W(A_.size(1)), N(x_.size(0)) {
    for (const auto& c : coupling) g.push_back(c.data_ptr<T>());
  }
  void radial(int64_t e, T* w) const { last_linear(hidden + e * H, A, b, H, W, w); }
};

template <typename T>
void forward_impl(const Views<T>& v, const torch::Tensor& centre_ptr, const torch::Tensor& by_centre,
                  const torch::Tensor& neighbour, const std::vector<Block>& blocks, std::vector<torch::Tensor>& out) {
  std::vector<T*> sp;
  for (auto& s : out) sp.push_back(s.data_ptr<T>());
  const int64_t* ptr = centre_ptr.data_ptr<int64_t>();
  const int64_t* order = by_centre.data_ptr<int64_t>();
  const int64_t* nbr = neighbour.data_ptr<int64_t>();
  const int64_t size = buffer_size(blocks);

  at::parallel_for(0, v.N, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> t(size), w(v.W);
    const T* we = w.data();
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t idx = ptr[i]; idx < ptr[i + 1]; ++idx) {
        const int64_t e = order[idx], j = nbr[e];
        v.radial(e, w.data());
        for (size_t k = 0; k < blocks.size(); ++k) {
          const Block& b = blocks[k];
          const int64_t n = b.U * b.R;
          couple(v.x + j * v.D + b.x_off, v.g[k] + e * b.d_in * b.R, b, t.data());
          T* s = sp[k] + i * n;
          for (int64_t u = 0; u < b.U; ++u) weigh<true>(we + b.w_off + u * b.Wb, b, t.data() + u * b.R, s + u * b.R);
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const Views<T>& v, const std::vector<torch::Tensor>& grad_out, const torch::Tensor& centre_ptr,
                   const torch::Tensor& by_centre, const torch::Tensor& neighbour, const std::vector<Block>& blocks,
                   const T* At, torch::Tensor& grad_x, torch::Tensor& grad_hidden, torch::Tensor& grad_A,
                   torch::Tensor& grad_b) {
  // Edges in the forward's (centre) order: the coupling blocks stream from memory in the order
  // they are stored (twice as fast as grouping by neighbour). Each thread accumulates dS/dx, dS/dA
  // and dS/db in its own buffers; they are summed in thread order (deterministic for a thread count).
  T* ghp = grad_hidden.data_ptr<T>();
  std::vector<const T*> gop;
  for (const auto& g : grad_out) gop.push_back(g.data_ptr<T>());
  const int64_t* ptr = centre_ptr.data_ptr<int64_t>();
  const int64_t* order = by_centre.data_ptr<int64_t>();
  const int64_t* nbr = neighbour.data_ptr<int64_t>();
  const int64_t size = buffer_size(blocks);
  const int64_t threads = at::get_num_threads();
  const int64_t per_thread = v.N * v.D + v.H * v.W + v.W;  // dS/dx, dS/dA, dS/db
  torch::Tensor partial = torch::zeros({threads, per_thread}, grad_x.options());
  T* pp = partial.data_ptr<T>();

  at::parallel_for(0, v.N, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> t(size), q(size), w(v.W), gw(v.W);
    const T* we = w.data();
    T* gwe = gw.data();
    T* gx = pp + at::get_thread_num() * per_thread;
    T* __restrict__ gA = gx + v.N * v.D;
    T* __restrict__ gb = gA + v.H * v.W;
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t idx = ptr[i]; idx < ptr[i + 1]; ++idx) {
        const int64_t e = order[idx], j = nbr[e];
        v.radial(e, w.data());
        for (size_t k = 0; k < blocks.size(); ++k) {
          const Block& b = blocks[k];
          const int64_t n = b.U * b.R;
          const T* g = v.g[k] + e * b.d_in * b.R;
          const T* __restrict__ gs = gop[k] + i * n;
          couple(v.x + j * v.D + b.x_off, g, b, t.data());
          for (int64_t u = 0; u < b.U; ++u) {
            const int64_t row = u * b.R;
            weigh<false>(we + b.w_off + u * b.Wb, b, gs + row, q.data() + row);
            sum_into_bins(t.data() + row, gs + row, b, gwe + b.w_off + u * b.Wb);  // dS/dw, before the ReLU's mask
          }
          feature_gradient(g, q.data(), b, gx + j * v.D + b.x_off);
        }
        for (int64_t c = 0; c < v.W; ++c) gwe[c] = we[c] > 0 ? gwe[c] : T(0);  // through the ReLU
        last_linear_backward(v.hidden + e * v.H, At, gwe, v.H, v.W, ghp + e * v.H, gA, gb);
      }
    }
  });
  const auto total = partial.sum(0);
  grad_x.copy_(total.narrow(0, 0, v.N * v.D).view({v.N, v.D}));
  grad_A.copy_(total.narrow(0, v.N * v.D, v.H * v.W).view({v.H, v.W}));
  grad_b.copy_(total.narrow(0, v.N * v.D + v.H * v.W, v.W));
}

void check_inputs(const torch::Tensor& x, const std::vector<torch::Tensor>& coupling, const torch::Tensor& hidden,
                  const torch::Tensor& A, const torch::Tensor& b, const torch::Tensor& centre_ptr,
                  const torch::Tensor& by_centre, const torch::Tensor& neighbour, const std::vector<Block>& blocks) {
  // the loops visit every edge once, through centre_ptr and by_centre (dS/dh is written per visit)
  for (const auto* t : {&centre_ptr, &by_centre, &neighbour})
    TORCH_CHECK(t->scalar_type() == torch::kInt64 && t->is_contiguous() && t->device().is_cpu() && t->dim() == 1,
                "edge order: contiguous int64 CPU vectors");
  TORCH_CHECK(centre_ptr.size(0) == x.size(0) + 1 && by_centre.size(0) == hidden.size(0) &&
                  neighbour.size(0) == hidden.size(0) && centre_ptr.data_ptr<int64_t>()[0] == 0 &&
                  centre_ptr.data_ptr<int64_t>()[x.size(0)] == hidden.size(0),
              "edge order: centre_ptr (N + 1,) from 0 to E, by_centre and neighbour (E,)");
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == 2, "x must be a contiguous CPU matrix");
  for (const auto* t : {&hidden, &A, &b})
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->is_contiguous() && t->device().is_cpu(),
                "hidden, A, b: contiguous CPU tensors of x's dtype");
  TORCH_CHECK(hidden.dim() == 2 && A.dim() == 2 && b.dim() == 1 && hidden.size(1) == A.size(0) && b.size(0) == A.size(1),
              "hidden (E, H), A (H, W), b (W,)");
  TORCH_CHECK(coupling.size() == blocks.size(), "one coupling block per l_I");
  int64_t covered = 0;  // the blocks' weight columns tile w, in order (backward writes each once)
  for (const auto& blk : blocks) {
    TORCH_CHECK(blk.w_off == covered, "block table: weight columns must tile w in order");
    covered += blk.U * blk.Wb;
  }
  TORCH_CHECK(covered == A.size(1), "block table: weight columns must cover w");
  for (size_t k = 0; k < blocks.size(); ++k) {
    const auto& g = coupling[k];
    const Block& blk = blocks[k];
    TORCH_CHECK(g.scalar_type() == x.scalar_type() && g.is_contiguous() && g.dim() == 3 && g.size(0) == hidden.size(0),
                "coupling: contiguous (E, d_I, R), x's dtype");
    TORCH_CHECK(g.size(1) == blk.d_in && g.size(2) == blk.R && blk.x_off + blk.U * blk.d_in <= x.size(1),
                "block table: shapes");
  }
}

}  // namespace

std::vector<torch::Tensor> fused_forward(const torch::Tensor& x, const std::vector<torch::Tensor>& coupling,
                                         const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& b,
                                         const torch::Tensor& centre_ptr, const torch::Tensor& by_centre,
                                         const torch::Tensor& neighbour, const torch::Tensor& table,
                                         const std::vector<torch::Tensor>& local) {
  const auto A = weight.t().contiguous();  // (H, W): each hidden feature scales one row
  const auto blocks = read_blocks(table, local);
  check_inputs(x, coupling, hidden, A, b, centre_ptr, by_centre, neighbour, blocks);
  std::vector<torch::Tensor> out;
  for (const auto& blk : blocks) out.push_back(torch::zeros({x.size(0), blk.U, blk.R}, x.options()));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_forward", [&] {
    forward_impl<scalar_t>(Views<scalar_t>(x, coupling, hidden, A, b), centre_ptr, by_centre, neighbour, blocks, out);
  });
  return out;
}

std::vector<torch::Tensor> fused_backward(const std::vector<torch::Tensor>& grad_out, const torch::Tensor& x,
                                          const std::vector<torch::Tensor>& coupling, const torch::Tensor& hidden,
                                          const torch::Tensor& weight, const torch::Tensor& b,
                                          const torch::Tensor& centre_ptr, const torch::Tensor& by_centre,
                                          const torch::Tensor& neighbour, const torch::Tensor& table,
                                          const std::vector<torch::Tensor>& local) {
  const auto A = weight.t().contiguous();
  const auto blocks = read_blocks(table, local);
  check_inputs(x, coupling, hidden, A, b, centre_ptr, by_centre, neighbour, blocks);
  TORCH_CHECK(grad_out.size() == blocks.size(), "one output gradient per block");
  std::vector<torch::Tensor> grads;
  for (const auto& g : grad_out) grads.push_back(g.contiguous());
  auto grad_x = torch::empty_like(x);
  auto grad_hidden = torch::empty_like(hidden);  // every row written: each edge has one centre
  auto grad_A = torch::empty_like(A);
  auto grad_b = torch::empty_like(b);
  TORCH_CHECK(weight.is_contiguous(), "weight: contiguous (W, H)");  // its rows, scaled by dS/dw, give dS/dh
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_backward", [&] {
    backward_impl<scalar_t>(Views<scalar_t>(x, coupling, hidden, A, b), grads, centre_ptr, by_centre, neighbour, blocks,
                            weight.data_ptr<scalar_t>(), grad_x, grad_hidden, grad_A, grad_b);
  });
  return {grad_x, grad_hidden, grad_A.t(), grad_b};  // dS/dweight (W, H)
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &fused_forward, "per-block messages summed over centres");
  m.def("backward", &fused_backward, "gradients of forward with respect to x, hidden, weight and b");
}
