// Group Norm on CPU in fused loops: the kernel of gnlib's backend="cpp". gnlib/norms/group_norm.py
// derives it; same equations and symbols here: forward (1), (2), (6), backward (B1), (B2).
// x is read as (N, C, L), L the product of the spatial sizes, stored channels first ((N, C, L) in
// memory) or channels last ((N, L, C) in memory); y and dx come out in x's layout. Sums of
// float32 values run in float32 over blocks of kBlock values (16 lanes) and in double across
// blocks: about as precise as double sums (mean, rstd within ~1e-7 relative) and faster.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;

namespace {

constexpr int64_t kBlock = 128;  // values per float32 partial sum

struct Sets {                    // x as (N, C, L) in G groups; one set S = (n, g)
  int64_t N, C, L, G, Cg, m;     // Cg = C/G channels per group, m = |S| = Cg L
  bool last;                     // channels last: (N, L, C) in memory
};

Sets sets_of(const Tensor& x, int64_t G) {
  TORCH_CHECK(x.dim() >= 2 && G > 0 && x.size(1) % G == 0, "gnlib_group_norm: bad shape or G");
  int64_t L = 1;
  for (int64_t d = 2; d < x.dim(); ++d) L *= x.size(d);
  const bool last = !x.is_contiguous();
  TORCH_CHECK(!last || x.movedim(1, -1).is_contiguous(),
              "gnlib_group_norm: x must be contiguous or channels-last (call x.contiguous())");
  return {x.size(0), x.size(1), L, G, x.size(1) / G, x.size(1) / G * L, last};
}

int64_t grain(int64_t per_item) {  // items per thread: at least 16K values each
  return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, per_item));
}

std::vector<double> per_channel(const OptTensor& t, int64_t C, double fill) {
  std::vector<double> v(C, fill);  // gamma_c or beta_c; `fill` if the tensor is None
  if (t && t->defined()) {
    const Tensor c = t->contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "per_channel", [&] {
      std::copy(c.data_ptr<scalar_t>(), c.data_ptr<scalar_t>() + C, v.begin());
    });
  }
  return v;
}

// (sum_i fa(i), sum_i fb(i)) over i < n: kLanes independent T partial sums (the compiler turns
// the lane loop into SIMD adds) over blocks of kBlock values, then double across blocks. Not
// `#pragma omp simd reduction`: inside at::parallel_for it made 2 threads 10x slower than 1.
template <typename T, typename FA, typename FB>
inline std::pair<double, double> sums(int64_t n, const FA& fa, const FB& fb) {
  constexpr int64_t kLanes = 16;
  double ta = 0, tb = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t i1 = std::min(n, i0 + kBlock);
    T pa[kLanes] = {}, pb[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) pa[j] += fa(i + j), pb[j] += fb(i + j);
    for (; i < i1; ++i) pa[0] += fa(i), pb[0] += fb(i);
    for (int64_t j = 0; j < kLanes; ++j) ta += pa[j], tb += pb[j];
  }
  return {ta, tb};
}

// Channels last, one sample: per channel c, oa[c] = sum_l fa(l C + c, c), ob[c] likewise.
template <typename T, typename FA, typename FB>
void column_sums(int64_t L, int64_t C, double* oa, double* ob, const FA& fa, const FB& fb) {
  std::vector<T> pa(C), pb(C);
  std::fill(oa, oa + C, 0.0), std::fill(ob, ob + C, 0.0);
  for (int64_t l0 = 0; l0 < L; l0 += kBlock) {
    std::fill(pa.begin(), pa.end(), T(0)), std::fill(pb.begin(), pb.end(), T(0));
    for (int64_t l = l0; l < std::min(L, l0 + kBlock); ++l) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) pa[c] += fa(l * C + c, c), pb[c] += fb(l * C + c, c);
    }
    for (int64_t c = 0; c < C; ++c) oa[c] += pa[c], ob[c] += pb[c];
  }
}

template <typename T>
void forward_kernel(const Sets& s, const T* x, const double* gamma, const double* beta, T* y,
                    T* mean, T* rstd, double D, double eps) {
  const auto none = [](auto...) { return T(0); };
  if (!s.last) {                                                  // channels first: S contiguous
    at::parallel_for(0, s.N * s.G, grain(s.m), [&](int64_t lo, int64_t hi) {
      for (int64_t ng = lo; ng < hi; ++ng) {
        const T* xs = x + ng * s.m;
        const T mu = sums<T>(s.m, [&](int64_t i) { return xs[i]; }, none).first / s.m;  // (2) mu
        const double var = sums<T>(s.m, [&](int64_t i) { T d = xs[i] - mu; return d * d; },
                                   none).first / D;               // (2) sigma^2
        const T r = 1 / std::sqrt(var + eps);                    // r = 1/sqrt(sigma^2 + eps)
        mean[ng] = mu, rstd[ng] = r;
        for (int64_t k = 0, ch = ng % s.G * s.Cg; k < s.Cg; ++k, ++ch) {
          const T a = gamma[ch] * r, b = beta[ch];                 // a_nc = gamma_c r
          const T* xc = xs + k * s.L;
          T* yc = y + ng * s.m + k * s.L;
#pragma omp simd
          for (int64_t l = 0; l < s.L; ++l) yc[l] = (xc[l] - mu) * a + b;  // (1), (6)
        }
      }
    });
    return;
  }
  at::parallel_for(0, s.N, grain(s.L * s.C), [&](int64_t lo, int64_t hi) {  // channels last
    std::vector<double> sum(s.C), unused(s.C);
    std::vector<T> mu_c(s.C), a_c(s.C), b_c(s.C);                 // per channel, for SIMD loops
    const auto group_sum = [&](int64_t g) {
      return std::accumulate(&sum[g * s.Cg], &sum[g * s.Cg] + s.Cg, 0.0);
    };
    for (int64_t n = lo; n < hi; ++n) {
      const T* xn = x + n * s.L * s.C;
      T* yn = y + n * s.L * s.C;
      column_sums<T>(s.L, s.C, sum.data(), unused.data(), [&](int64_t i, int64_t) { return xn[i]; },
                     none);
      for (int64_t g = 0, ng = n * s.G; g < s.G; ++g, ++ng) {
        mean[ng] = group_sum(g) / s.m;                            // (2) mu
        std::fill(&mu_c[g * s.Cg], &mu_c[g * s.Cg] + s.Cg, mean[ng]);
      }
      column_sums<T>(s.L, s.C, sum.data(), unused.data(),
                     [&](int64_t i, int64_t c) { T d = xn[i] - mu_c[c]; return d * d; }, none);
      for (int64_t g = 0, ng = n * s.G; g < s.G; ++g, ++ng) {
        const T r = rstd[ng] = 1 / std::sqrt(group_sum(g) / D + eps);  // (2) sigma^2; r
        for (int64_t ch = g * s.Cg; ch < (g + 1) * s.Cg; ++ch)
          a_c[ch] = gamma[ch] * r, b_c[ch] = beta[ch];            // a_nc = gamma_c r
      }
      for (int64_t l = 0; l < s.L; ++l) {
#pragma omp simd
        for (int64_t c = 0; c < s.C; ++c)                         // (1), (6)
          yn[l * s.C + c] = (xn[l * s.C + c] - mu_c[c]) * a_c[c] + b_c[c];
      }
    }
  });
}

// (B1) for one set S = (n, g) from its per-channel sums s_nc, b_nc: (kappa_ng, c_ng).
std::pair<double, double> kappa_c(const double* s, const double* b, const double* gamma,
                                  double mu, double r, int64_t Cg, double m, double D) {
  double sum_g = 0, sum_gx = 0;                                  // sum_S g, sum_S g x
  for (int64_t k = 0; k < Cg; ++k) sum_g += gamma[k] * b[k], sum_gx += gamma[k] * s[k];
  const double sum_g_xhat = (sum_gx - mu * sum_g) * r;           // sum_S g x_hat
  const double kappa = -r * r * sum_g_xhat / D;                  // kappa_ng
  return {kappa, -kappa * mu - r * sum_g / m};                   // c_ng
}

template <typename T>
void backward_kernel(const Sets& s, const T* dy, const T* x, const T* mean, const T* rstd,
                     const double* gamma, T* dx, double* S, double* B, double D) {
  if (!s.last) {                                                  // channels first
    at::parallel_for(0, s.N * s.G, grain(2 * s.m), [&](int64_t lo, int64_t hi) {
      for (int64_t ng = lo; ng < hi; ++ng) {
        const int64_t nc = ng * s.Cg, c0 = ng % s.G * s.Cg;      // first (n, c) and c of S
        for (int64_t k = 0; k < s.Cg; ++k) {        // s_nc = sum_l dy x, b_nc = sum_l dy
          const T *xc = x + (nc + k) * s.L, *dyc = dy + (nc + k) * s.L;
          std::tie(S[nc + k], B[nc + k]) = sums<T>(
              s.L, [&](int64_t l) { return dyc[l] * xc[l]; }, [&](int64_t l) { return dyc[l]; });
        }
        if (!dx) continue;
        const auto [kappa, c] = kappa_c(S + nc, B + nc, gamma + c0, mean[ng], rstd[ng], s.Cg,
                                        s.m, D);
        for (int64_t k = 0, i0 = nc * s.L; k < s.Cg; ++k, i0 += s.L) {
          const T a = gamma[c0 + k] * rstd[ng], kp = kappa, cc = c;  // a_nc = gamma_c r
#pragma omp simd
          for (int64_t i = i0; i < i0 + s.L; ++i) dx[i] = a * dy[i] + kp * x[i] + cc;  // (B1)
        }
      }
    });
    return;
  }
  at::parallel_for(0, s.N, grain(2 * s.L * s.C), [&](int64_t lo, int64_t hi) {  // channels last
    std::vector<T> a_c(s.C), kappa_c_(s.C), c_c(s.C);            // per channel, for the SIMD loop
    for (int64_t n = lo; n < hi; ++n) {
      const T *xn = x + n * s.L * s.C, *dyn = dy + n * s.L * s.C;
      column_sums<T>(s.L, s.C, S + n * s.C, B + n * s.C,  // s_nc = sum_l dy x, b_nc = sum_l dy
                     [&](int64_t i, int64_t) { return dyn[i] * xn[i]; },
                     [&](int64_t i, int64_t) { return dyn[i]; });
      if (!dx) continue;
      for (int64_t g = 0, ng = n * s.G, c0 = 0; g < s.G; ++g, ++ng, c0 += s.Cg) {
        const auto [kappa, c] = kappa_c(S + n * s.C + c0, B + n * s.C + c0, gamma + c0, mean[ng],
                                        rstd[ng], s.Cg, s.m, D);
        for (int64_t ch = c0; ch < c0 + s.Cg; ++ch)
          a_c[ch] = gamma[ch] * rstd[ng], kappa_c_[ch] = kappa, c_c[ch] = c;  // a_nc = gamma_c r
      }
      T* dxn = dx + n * s.L * s.C;
      for (int64_t l = 0; l < s.L; ++l) {
#pragma omp simd
        for (int64_t c = 0; c < s.C; ++c)                          // (B1)
          dxn[l * s.C + c] = a_c[c] * dyn[l * s.C + c] + kappa_c_[c] * xn[l * s.C + c] + c_c[c];
      }
    }
  });
}

}  // namespace

std::vector<Tensor> forward(const Tensor& x, const OptTensor& weight, const OptTensor& bias,
                            int64_t G, double eps, bool unbiased) {
  const Sets s = sets_of(x, G);
  const std::vector<double> gamma = per_channel(weight, s.C, 1), beta = per_channel(bias, s.C, 0);
  Tensor y = at::empty_like(x), mean = at::empty({s.N, G}, x.options());
  Tensor rstd = at::empty_like(mean);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gnlib_group_norm_forward", [&] {
    forward_kernel<scalar_t>(s, x.data_ptr<scalar_t>(), gamma.data(), beta.data(),
                             y.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(),
                             rstd.data_ptr<scalar_t>(), unbiased ? s.m - 1 : s.m, eps);  // D
  });
  return {y, mean, rstd};
}

std::vector<Tensor> backward(const Tensor& dy_in, const Tensor& x, const Tensor& mean,
                             const Tensor& rstd, const OptTensor& weight, int64_t G, int64_t D,
                             bool need_x, bool need_w) {
  const Sets s = sets_of(x, G);
  TORCH_CHECK(mean.is_contiguous() && rstd.is_contiguous() && mean.numel() == s.N * G &&
              mean.scalar_type() == x.scalar_type(), "gnlib_group_norm: mean, rstd: (N, G) like x");
  const Tensor dy = dy_in.strides() == x.strides() && dy_in.scalar_type() == x.scalar_type()
      ? dy_in : at::empty_like(x).copy_(dy_in);                   // dy in x's memory format
  const std::vector<double> gamma = per_channel(weight, s.C, 1);
  std::vector<double> S(s.N * s.C), B(s.N * s.C), dw(s.C), db(s.C);
  Tensor dx = need_x ? at::empty_like(x) : Tensor();
  Tensor dw_t = at::empty({s.C}, x.options()), db_t = at::empty({s.C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gnlib_group_norm_backward", [&] {
    const scalar_t *mu = mean.data_ptr<scalar_t>(), *r = rstd.data_ptr<scalar_t>();
    backward_kernel<scalar_t>(s, dy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), mu, r,
                              gamma.data(), need_x ? dx.data_ptr<scalar_t>() : nullptr, S.data(),
                              B.data(), D);
    for (int64_t ng = 0; ng < s.N * s.G; ++ng)                   // i = (n, c), c = (g, k)
      for (int64_t k = 0, ch = ng % s.G * s.Cg, i = ng * s.Cg; k < s.Cg; ++k, ++ch, ++i) {
        dw[ch] += r[ng] * (S[i] - mu[ng] * B[i]);                // (B2) gamma: sum_n r (s - mu b)
        db[ch] += B[i];                                          // (B2) beta: sum_n b
      }
    std::copy(dw.begin(), dw.end(), dw_t.data_ptr<scalar_t>());
    std::copy(db.begin(), db.end(), db_t.data_ptr<scalar_t>());
  });
  return {dx, need_w ? dw_t : Tensor(), db_t};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("forward", &forward, "Group Norm forward (1), (2), (6): (y, mean, rstd)");
  module.def("backward", &backward, "Group Norm backward (B1), (B2): (dx, dweight, dbias)");
}
