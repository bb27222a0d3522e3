// The per-edge loop of glasslab's fused convolution (glasslab/models/fused_kernel.py).
//
// For every input order l_I of a layer (a "block": all its pairs (l_I, l_O) at once) and every centre i:
//   S[i, u, c] = sum_{e: centre(e) = i} ReLU(w[e, (u, l_O, p)]) * T_e[u, c],  T_e[u, c] = sum_a x[j(e), u, a] G[e, a, c]
// (x: regrouped node features, G: the cached coupling block of l_I with columns c = (l_O, m, p),
// w: the radial MLP's output before its final ReLU), and the gradients of S with respect to x and w. Torch ops must write the E x (U, d_O, P)
// products of every pair to memory, weight them, scatter them and read them back in the
// backward pass; here they live in a small buffer per edge, so the memory traffic is the
// cached geometry read once per pass. Both passes run in parallel over centres (no atomics).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <type_traits>
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
};

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
    blocks.push_back({a[k][0], a[k][1], a[k][2], a[k][3], a[k][4], a[k][5], index.data_ptr<int32_t>()});
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

// e[c] = ReLU(w[local[c]]), c < R: one channel's radial weights spread over the block's columns
// (each weight repeats over the 2 l_O + 1 values of m).
template <typename T>
inline void expand_weights(const T* __restrict__ w, const Block& b, T* __restrict__ e) {
  for (int64_t c = 0; c < b.R; ++c) e[c] = relu(w[b.local[c]]);
}

#ifdef __AVX512F__
// The same with the weights in one register and a permutation per 16 columns: compilers turn the
// loop above into memory gathers, 3x slower (measured on the CPU that built glasslab).
template <>
inline void expand_weights<float>(const float* __restrict__ w, const Block& b, float* __restrict__ e) {
  if (b.Wb > 16) {
    for (int64_t c = 0; c < b.R; ++c) e[c] = relu(w[b.local[c]]);
    return;
  }
  const __m512 weights = _mm512_max_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << b.Wb) - 1), w), _mm512_setzero_ps());
  for (int64_t c = 0; c < b.R; c += 16) {
    const int64_t left = b.R - c;
    const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    const __m512i index = _mm512_maskz_loadu_epi32(mask, b.local + c);
    _mm512_mask_storeu_ps(e + c, mask, _mm512_permutexvar_ps(index, weights));
  }
}
#endif

// q[c] = e[c] g[c]
template <typename T>
inline void multiply(T* __restrict__ q, const T* __restrict__ e, const T* __restrict__ g, int64_t n) {
  for (int64_t c = 0; c < n; ++c) q[c] = e[c] * g[c];
}

// gw[k] = sum over c with local[c] = k of t[c] g[c], k < W_b: one channel's weight gradient (each
// bin written once per edge, so that the gradient needs no zero-filling)
template <typename T>
inline void sum_into_bins(const T* __restrict__ t, const T* __restrict__ g, const Block& b, T* __restrict__ gw) {
  for (int64_t k = 0; k < b.Wb; ++k) gw[k] = 0;
  for (int64_t c = 0; c < b.R; ++c) gw[b.local[c]] += t[c] * g[c];
}

#ifdef __AVX512F__
// The same with the W_b <= 16 bins in registers: each product is broadcast and added under a
// one-lane mask, four accumulators in turn (the scalar loop above updates memory per column,
// 2x slower).
template <>
inline void sum_into_bins<float>(const float* __restrict__ t, const float* __restrict__ g, const Block& b,
                                 float* __restrict__ gw) {
  if (b.Wb > 16 || b.R > 60) {
    for (int64_t k = 0; k < b.Wb; ++k) gw[k] = 0;
    for (int64_t c = 0; c < b.R; ++c) gw[b.local[c]] += t[c] * g[c];
    return;
  }
  alignas(64) float products[64];
  for (int64_t c = 0; c < b.R; ++c) products[c] = t[c] * g[c];
  for (int64_t c = b.R; c < ((b.R + 3) & ~int64_t(3)); ++c) products[c] = 0;  // pad to 4 columns (bin 0, +0)
  const auto add = [&](__m512 acc, int64_t c) {
    const __mmask16 lane = (__mmask16)(1u << (c < b.R ? b.local[c] : 0));
    return _mm512_mask_add_ps(acc, lane, acc, _mm512_set1_ps(products[c]));
  };
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int64_t c = 0; c < b.R; c += 4) {
    acc0 = add(acc0, c);
    acc1 = add(acc1, c + 1);
    acc2 = add(acc2, c + 2);
    acc3 = add(acc3, c + 3);
  }
  const __mmask16 bins = (__mmask16)((1u << b.Wb) - 1);
  const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
  _mm512_mask_storeu_ps(gw, bins, sum);
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

// s[c] += e[c] t[c]
template <typename T>
inline void multiply_add(T* __restrict__ s, const T* __restrict__ e, const T* __restrict__ t, int64_t n) {
  for (int64_t c = 0; c < n; ++c) s[c] += e[c] * t[c];
}

template <typename T>
struct Views {
  const T* x;
  const T* w;
  std::vector<const T*> g;
  int64_t D, W, N;
  Views(const torch::Tensor& x_, const std::vector<torch::Tensor>& coupling, const torch::Tensor& w_)
      : x(x_.data_ptr<T>()), w(w_.data_ptr<T>()), D(x_.size(1)), W(w_.size(1)), N(x_.size(0)) {
    for (const auto& c : coupling) g.push_back(c.data_ptr<T>());
  }
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
    std::vector<T> t(size), spread(size);
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t idx = ptr[i]; idx < ptr[i + 1]; ++idx) {
        const int64_t e = order[idx], j = nbr[e];
        const T* __restrict__ we = v.w + e * v.W;
        for (size_t k = 0; k < blocks.size(); ++k) {
          const Block& b = blocks[k];
          const int64_t n = b.U * b.R;
          couple(v.x + j * v.D + b.x_off, v.g[k] + e * b.d_in * b.R, b, t.data());
          T* s = sp[k] + i * n;
          for (int64_t u = 0; u < b.U; ++u) {
            expand_weights(we + b.w_off + u * b.Wb, b, spread.data());
            multiply_add(s + u * b.R, spread.data(), t.data() + u * b.R, b.R);
          }
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const Views<T>& v, const std::vector<torch::Tensor>& grad_out, const torch::Tensor& centre_ptr,
                   const torch::Tensor& by_centre, const torch::Tensor& neighbour, const std::vector<Block>& blocks,
                   torch::Tensor& grad_x, torch::Tensor& grad_w) {
  // Edges in the forward's (centre) order: the coupling blocks stream from memory in the order
  // they are stored (twice as fast as grouping by neighbour). Each thread accumulates dS/dx in
  // its own buffer; the buffers are summed in thread order (deterministic for a thread count).
  T* gwp = grad_w.data_ptr<T>();
  std::vector<const T*> gop;
  for (const auto& g : grad_out) gop.push_back(g.data_ptr<T>());
  const int64_t* ptr = centre_ptr.data_ptr<int64_t>();
  const int64_t* order = by_centre.data_ptr<int64_t>();
  const int64_t* nbr = neighbour.data_ptr<int64_t>();
  const int64_t size = buffer_size(blocks);
  const int64_t threads = at::get_num_threads();
  torch::Tensor partial = torch::zeros({threads, v.N, v.D}, grad_x.options());
  T* pp = partial.data_ptr<T>();

  at::parallel_for(0, v.N, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> t(size), q(size), spread(size);
    T* gx = pp + at::get_thread_num() * v.N * v.D;
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t idx = ptr[i]; idx < ptr[i + 1]; ++idx) {
        const int64_t e = order[idx], j = nbr[e];
        const T* __restrict__ we = v.w + e * v.W;
        T* __restrict__ gwe = gwp + e * v.W;
        for (size_t k = 0; k < blocks.size(); ++k) {
          const Block& b = blocks[k];
          const int64_t n = b.U * b.R;
          const T* g = v.g[k] + e * b.d_in * b.R;
          const T* __restrict__ gs = gop[k] + i * n;
          couple(v.x + j * v.D + b.x_off, g, b, t.data());
          for (int64_t u = 0; u < b.U; ++u) {
            const int64_t row = u * b.R;
            expand_weights(we + b.w_off + u * b.Wb, b, spread.data());
            multiply(q.data() + row, spread.data(), gs + row, b.R);
            sum_into_bins(t.data() + row, gs + row, b, gwe + b.w_off + u * b.Wb);  // dS/dw, before the ReLU's mask
          }
          T* gxj = gx + j * v.D + b.x_off;  // dS/dx[u, a] = sum_c G[a, c] q[u, c]
          for (int64_t u = 0; u < b.U; ++u) {
            const T* __restrict__ qu = q.data() + u * b.R;
            for (int64_t a = 0; a < b.d_in; ++a) {
              const T* __restrict__ row = g + a * b.R;
              gxj[u * b.d_in + a] += dot(row, qu, b.R);
            }
          }
        }
        for (int64_t c = 0; c < v.W; ++c) gwe[c] = we[c] > 0 ? gwe[c] : T(0);  // through the ReLU
      }
    }
  });
  grad_x.copy_(partial.sum(0));
}

void check_inputs(const torch::Tensor& x, const std::vector<torch::Tensor>& coupling, const torch::Tensor& w,
                  const std::vector<Block>& blocks) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == 2, "x must be a contiguous CPU matrix");
  TORCH_CHECK(w.scalar_type() == x.scalar_type() && w.is_contiguous() && w.dim() == 2, "w: contiguous, x's dtype");
  TORCH_CHECK(coupling.size() == blocks.size(), "one coupling block per l_I");
  int64_t covered = 0;  // the blocks' weight columns tile w, in order (backward writes each once)
  for (const auto& b : blocks) {
    TORCH_CHECK(b.w_off == covered, "block table: weight columns must tile w in order");
    covered += b.U * b.Wb;
  }
  TORCH_CHECK(covered == w.size(1), "block table: weight columns must cover w");
  for (size_t k = 0; k < blocks.size(); ++k) {
    const auto& g = coupling[k];
    const Block& b = blocks[k];
    TORCH_CHECK(g.scalar_type() == x.scalar_type() && g.is_contiguous() && g.dim() == 3 && g.size(0) == w.size(0),
                "coupling: contiguous (E, d_I, R), x's dtype");
    TORCH_CHECK(g.size(1) == b.d_in && g.size(2) == b.R && b.x_off + b.U * b.d_in <= x.size(1), "block table: shapes");
    TORCH_CHECK(b.w_off >= 0 && b.w_off + b.U * b.Wb <= w.size(1), "block table: weight columns");
    for (int64_t c = 0; c < b.R; ++c) TORCH_CHECK(b.local[c] >= 0 && b.local[c] < b.Wb, "local weight index out of range");
  }
}

}  // namespace

std::vector<torch::Tensor> fused_forward(const torch::Tensor& x, const std::vector<torch::Tensor>& coupling,
                                         const torch::Tensor& w, const torch::Tensor& centre_ptr,
                                         const torch::Tensor& by_centre, const torch::Tensor& neighbour,
                                         const torch::Tensor& table, const std::vector<torch::Tensor>& local) {
  const auto blocks = read_blocks(table, local);
  check_inputs(x, coupling, w, blocks);
  std::vector<torch::Tensor> out;
  for (const auto& b : blocks) out.push_back(torch::zeros({x.size(0), b.U, b.R}, x.options()));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_forward", [&] {
    forward_impl<scalar_t>(Views<scalar_t>(x, coupling, w), centre_ptr, by_centre, neighbour, blocks, out);
  });
  return out;
}

std::vector<torch::Tensor> fused_backward(const std::vector<torch::Tensor>& grad_out, const torch::Tensor& x,
                                          const std::vector<torch::Tensor>& coupling, const torch::Tensor& w,
                                          const torch::Tensor& centre_ptr, const torch::Tensor& by_centre,
                                          const torch::Tensor& neighbour, const torch::Tensor& table,
                                          const std::vector<torch::Tensor>& local) {
  const auto blocks = read_blocks(table, local);
  check_inputs(x, coupling, w, blocks);
  TORCH_CHECK(grad_out.size() == blocks.size(), "one output gradient per block");
  std::vector<torch::Tensor> grads;
  for (const auto& g : grad_out) grads.push_back(g.contiguous());
  auto grad_x = torch::zeros_like(x);
  auto grad_w = torch::empty_like(w);  // every entry written: the blocks' weight columns cover w
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_backward", [&] {
    backward_impl<scalar_t>(Views<scalar_t>(x, coupling, w), grads, centre_ptr, by_centre, neighbour, blocks, grad_x,
                            grad_w);
  });
  return {grad_x, grad_w};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &fused_forward, "per-block messages summed over centres");
  m.def("backward", &fused_backward, "gradients of forward with respect to x and w");
}
