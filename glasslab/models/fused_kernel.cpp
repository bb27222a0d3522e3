// The per-edge loop of glasslab's fused convolution (glasslab/models/fused_kernel.py).
//
// For every input order l_I of a layer (a "block": all its pairs (l_I, l_O) at once) and every centre i:
//   S[i, u, c] = sum_{e: centre(e) = i} ReLU(w[e, index[u, c]]) * T_e[u, c],  T_e[u, c] = sum_a x[j(e), u, a] G[e, a, c]
// (x: regrouped node features, G: the cached coupling block of l_I with columns c = (l_O, m, p),
// w: the radial MLP's output before its final ReLU, index: which weight (pair, u, p) multiplies
// column c of channel u), and the gradients of S with respect to x and w. Torch ops must write the E x (U, d_O, P)
// products of every pair to memory, weight them, scatter them and read them back in the
// backward pass; here they live in a small buffer per edge, so the memory traffic is the
// cached geometry read once per pass. Both passes run in parallel over centres (no atomics).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <vector>

namespace {

struct Block {      // the pairs (l_I, l_O) of one input order l_I, all l_O at once
  int64_t x_off;    // first column of the l_I block of x, laid out (u, a)
  int64_t U;        // input channels of order l_I
  int64_t d_in;     // 2 l_I + 1
  int64_t R;        // columns (l_O, m, p) of the coupling block G
  const int32_t* weight_index;  // (U, R): column of w that weights T[u, c]
};

std::vector<Block> read_blocks(const torch::Tensor& table, const std::vector<torch::Tensor>& weight_index) {
  TORCH_CHECK(table.dim() == 2 && table.size(1) == 4 && table.scalar_type() == torch::kInt64,
              "block table must be (blocks, 4) int64");
  TORCH_CHECK((int64_t)weight_index.size() == table.size(0), "one weight index per block");
  auto t = table.contiguous();
  auto a = t.accessor<int64_t, 2>();
  std::vector<Block> blocks;
  for (int64_t k = 0; k < t.size(0); ++k) {
    const auto& index = weight_index[k];
    TORCH_CHECK(index.scalar_type() == torch::kInt32 && index.is_contiguous() && index.numel() == a[k][1] * a[k][3],
                "weight index: contiguous int32 (U, R)");
    blocks.push_back({a[k][0], a[k][1], a[k][2], a[k][3], index.data_ptr<int32_t>()});
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

template <typename T>
inline void couple(const T* __restrict__ x, const T* __restrict__ g, const Block& b, T* __restrict__ t) {
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
    std::vector<T> t(size);
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t idx = ptr[i]; idx < ptr[i + 1]; ++idx) {
        const int64_t e = order[idx], j = nbr[e];
        const T* __restrict__ we = v.w + e * v.W;
        for (size_t k = 0; k < blocks.size(); ++k) {
          const Block& b = blocks[k];
          const int64_t n = b.U * b.R;
          couple(v.x + j * v.D + b.x_off, v.g[k] + e * b.d_in * b.R, b, t.data());
          T* __restrict__ s = sp[k] + i * n;
          for (int64_t uc = 0; uc < n; ++uc) s[uc] += relu(we[b.weight_index[uc]]) * t[uc];
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
    std::vector<T> t(size), q(size);
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
          for (int64_t uc = 0; uc < n; ++uc) t[uc] *= gs[uc];
          for (int64_t uc = 0; uc < n; ++uc) gwe[b.weight_index[uc]] += t[uc];  // dS/dw
          for (int64_t uc = 0; uc < n; ++uc) q[uc] = relu(we[b.weight_index[uc]]) * gs[uc];
          T* gxj = gx + j * v.D + b.x_off;  // dS/dx[u, a] = sum_c G[a, c] q[u, c]
          for (int64_t u = 0; u < b.U; ++u) {
            const T* __restrict__ qu = q.data() + u * b.R;
            for (int64_t a = 0; a < b.d_in; ++a) {
              const T* __restrict__ row = g + a * b.R;
              T acc = 0;
#pragma omp simd reduction(+ : acc)
              for (int64_t c = 0; c < b.R; ++c) acc += row[c] * qu[c];
              gxj[u * b.d_in + a] += acc;
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
                  const std::vector<Block>& blocks, const std::vector<torch::Tensor>& weight_index) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == 2, "x must be a contiguous CPU matrix");
  TORCH_CHECK(w.scalar_type() == x.scalar_type() && w.is_contiguous() && w.dim() == 2, "w: contiguous, x's dtype");
  TORCH_CHECK(coupling.size() == blocks.size(), "one coupling block per l_I");
  for (size_t k = 0; k < blocks.size(); ++k) {
    const auto& g = coupling[k];
    const Block& b = blocks[k];
    TORCH_CHECK(g.scalar_type() == x.scalar_type() && g.is_contiguous() && g.dim() == 3 && g.size(0) == w.size(0),
                "coupling: contiguous (E, d_I, R), x's dtype");
    TORCH_CHECK(g.size(1) == b.d_in && g.size(2) == b.R && b.x_off + b.U * b.d_in <= x.size(1), "block table: shapes");
    const auto index = weight_index[k];
    TORCH_CHECK(index.min().item<int32_t>() >= 0 && index.max().item<int32_t>() < w.size(1), "weight index out of range");
  }
}

}  // namespace

std::vector<torch::Tensor> fused_forward(const torch::Tensor& x, const std::vector<torch::Tensor>& coupling,
                                         const torch::Tensor& w, const torch::Tensor& centre_ptr,
                                         const torch::Tensor& by_centre, const torch::Tensor& neighbour,
                                         const torch::Tensor& table, const std::vector<torch::Tensor>& weight_index) {
  const auto blocks = read_blocks(table, weight_index);
  check_inputs(x, coupling, w, blocks, weight_index);
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
                                          const std::vector<torch::Tensor>& weight_index) {
  const auto blocks = read_blocks(table, weight_index);
  check_inputs(x, coupling, w, blocks, weight_index);
  TORCH_CHECK(grad_out.size() == blocks.size(), "one output gradient per block");
  std::vector<torch::Tensor> grads;
  for (const auto& g : grad_out) grads.push_back(g.contiguous());
  auto grad_x = torch::zeros_like(x);
  auto grad_w = torch::zeros_like(w);
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
