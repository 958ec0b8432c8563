#pragma once
// The pieces of the LLaMA block that are not projections, each forward beside its backward:
// RMSNorm, RoPE, softmax, SwiGLU and causal grouped-query attention. The inference forward
// (transformer.hpp) and the training pass (backprop.hpp) both call these, so they compute the same
// floats.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include "multibool/core/matrix_view.hpp"

namespace multibool::llama {

// llama2.c's RMSNorm of one row: out = weight * x * r with r = 1 / sqrt(mean(x^2) + epsilon); returns r.
inline float rms_norm_row(std::span<const float> x, std::span<const float> weight, float epsilon,
                          std::span<float> out) noexcept {
    float sum_squares = 0.0f;
    for (float e : x) sum_squares += e * e;
    const float inv = 1.0f / std::sqrt(sum_squares / float(x.size()) + epsilon);
    for (std::size_t j = 0; j < x.size(); ++j) out[j] = weight[j] * (inv * x[j]);
    return inv;
}

// RMSNorm of every row; inverse (one float per row, or empty) keeps each row's r for the backward.
inline void rms_norm(MatrixView<const float> x, std::span<const float> weight, float epsilon, MatrixView<float> out,
                     std::span<float> inverse = {}) noexcept {
    for (std::size_t t = 0; t < x.rows(); ++t) {
        const float r = rms_norm_row(x.row(t), weight, epsilon, out.row(t));
        if (!inverse.empty()) inverse[t] = r;
    }
}

// RMSNorm's backward for one row: out = w * x * r with r = (mean(x^2) + eps)^(-1/2), so
// dx_j = r w_j g_j - r^3 x_j (sum_i g_i w_i x_i) / n and dw_j = g_j r x_j. Adds to dx and to dw
// (dw may be empty: the weight's gradient is not wanted).
inline void rms_norm_backward_row(std::span<const float> x, float r, std::span<const float> w, std::span<const float> g,
                                  std::span<float> dx, std::span<float> dw) noexcept {
    float dot = 0.0f;
    for (std::size_t j = 0; j < x.size(); ++j) dot += g[j] * w[j] * x[j];
    const float c = r * r * r * dot / float(x.size());
    for (std::size_t j = 0; j < x.size(); ++j) dx[j] += r * w[j] * g[j] - c * x[j];
    if (!dw.empty()) {
        for (std::size_t j = 0; j < x.size(); ++j) dw[j] += g[j] * r * x[j];
    }
}

// rms_norm_backward_row over every row, with the inverse the forward kept; dw sums the rows in order.
inline void rms_norm_backward(MatrixView<const float> x, std::span<const float> inverse, std::span<const float> w,
                              MatrixView<const float> g, MatrixView<float> dx, std::span<float> dw) noexcept {
    for (std::size_t t = 0; t < x.rows(); ++t) rms_norm_backward_row(x.row(t), inverse[t], w, g.row(t), dx.row(t), dw);
}

// RoPE as llama2.c computes it in float: pair i of a head turns by pos / theta^(i / head_size)
// (theta = 10000 in llama2.c, a GGUF file's llama.rope.freq_base). rotation holds (cos, sin) of
// each pair's angle, head_size floats.
inline void set_rotation(std::span<float> rotation, std::size_t pos, float theta) noexcept {
    const std::size_t hs = rotation.size();
    for (std::size_t i = 0; i < hs; i += 2) {
        const float angle = float(pos) * (1.0f / std::pow(theta, float(i) / float(hs)));
        rotation[i] = std::cos(angle);
        rotation[i + 1] = std::sin(angle);
    }
}

// Rotates each consecutive pair of every head of one q or k row; inverse = true applies the
// transposed rotation (the backward pass of a rotation).
inline void rotate(std::span<float> row, std::span<const float> rotation, bool inverse = false) noexcept {
    const std::size_t hs = rotation.size();
    for (std::size_t i = 0; i < row.size(); i += 2) {
        const float cos = rotation[i % hs];
        const float sin = inverse ? -rotation[i % hs + 1] : rotation[i % hs + 1];
        const float a = row[i];
        const float b = row[i + 1];
        row[i] = a * cos - b * sin;
        row[i + 1] = a * sin + b * cos;
    }
}

inline void softmax(std::span<float> x) noexcept {
    const float max = *std::ranges::max_element(x);
    float sum = 0.0f;
    for (float& e : x) {
        e = std::exp(e - max);
        sum += e;
    }
    for (float& e : x) e /= sum;
}

// SwiGLU's gate: silu(g) * u.
inline float swiglu(float g, float u) noexcept { return g / (1.0f + std::exp(-g)) * u; }

// dL/dg and dL/du of swiglu(g, u) given dL/d(swiglu): with s = sigmoid(g), silu'(g) = s (1 + g (1 - s)).
struct SwigluGradient {
    float gate;
    float up;
};
inline SwigluGradient swiglu_backward(float g, float u, float dout) noexcept {
    const float sigmoid = 1.0f / (1.0f + std::exp(-g));
    return {dout * u * sigmoid * (1.0f + g * (1.0f - sigmoid)), dout * g * sigmoid};
}

// The head layout of grouped-query attention: query head h reads key/value head
// h / (heads / kv_heads), i.e. kv_dim columns kv_offset(h) .. kv_offset(h) + head_size.
struct AttentionHeads {
    std::size_t heads = 0;
    std::size_t kv_heads = 0;
    std::size_t head_size = 0;

    [[nodiscard]] std::size_t kv_offset(std::size_t head) const noexcept {
        return (head / (heads / kv_heads)) * head_size;
    }
    [[nodiscard]] std::span<const float> of(std::span<const float> row, std::size_t head) const noexcept {
        return row.subspan(head * head_size, head_size);
    }
    [[nodiscard]] std::span<float> of(std::span<float> row, std::size_t head) const noexcept {
        return row.subspan(head * head_size, head_size);
    }
};

// One head of one query at position probabilities.size() - 1, attending causally to positions
// 0 .. that position: probabilities receives softmax_p(q . k_p / sqrt(head_size)), out the
// probability-weighted sum of v_p. keys and values hold a position per row (kv_dim columns), the
// head's columns start at kv_offset.
inline void attention_head(std::span<const float> q, MatrixView<const float> keys, MatrixView<const float> values,
                           std::size_t kv_offset, std::span<float> probabilities, std::span<float> out) noexcept {
    const std::size_t hs = q.size();
    const float inv_sqrt = 1.0f / std::sqrt(float(hs));
    for (std::size_t p = 0; p < probabilities.size(); ++p) {
        const auto k = keys.row(p).subspan(kv_offset, hs);
        float dot = 0.0f;
        for (std::size_t i = 0; i < hs; ++i) dot += q[i] * k[i];
        probabilities[p] = dot * inv_sqrt;
    }
    softmax(probabilities);
    std::ranges::fill(out, 0.0f);
    for (std::size_t p = 0; p < probabilities.size(); ++p) {
        const auto v = values.row(p).subspan(kv_offset, hs);
        for (std::size_t i = 0; i < hs; ++i) out[i] += probabilities[p] * v[i];
    }
}

// The backward of attention_head, from dout and the probabilities it produced: adds to dq (this
// query's head) and to the head's columns of dkeys and dvalues at positions 0 .. t. dscores is
// scratch of probabilities.size() floats.
inline void attention_head_backward(std::span<const float> q, MatrixView<const float> keys,
                                    MatrixView<const float> values, std::size_t kv_offset,
                                    std::span<const float> probabilities, std::span<const float> dout,
                                    std::span<float> dscores, std::span<float> dq, MatrixView<float> dkeys,
                                    MatrixView<float> dvalues) noexcept {
    const std::size_t hs = q.size();
    const float inv_sqrt = 1.0f / std::sqrt(float(hs));
    // Softmax backward: dscore_p = P_p (dP_p - sum_r P_r dP_r), with dP_p = dout . v_p.
    float weighted = 0.0f;
    for (std::size_t p = 0; p < probabilities.size(); ++p) {
        const auto v = values.row(p).subspan(kv_offset, hs);
        const auto dv = dvalues.row(p).subspan(kv_offset, hs);
        float dp = 0.0f;
        for (std::size_t i = 0; i < hs; ++i) {
            dp += dout[i] * v[i];
            dv[i] += probabilities[p] * dout[i];
        }
        dscores[p] = dp;
        weighted += probabilities[p] * dp;
    }
    for (std::size_t p = 0; p < probabilities.size(); ++p) {
        const float ds = probabilities[p] * (dscores[p] - weighted) * inv_sqrt;
        const auto k = keys.row(p).subspan(kv_offset, hs);
        const auto dk = dkeys.row(p).subspan(kv_offset, hs);
        for (std::size_t i = 0; i < hs; ++i) {
            dq[i] += ds * k[i];
            dk[i] += ds * q[i];
        }
    }
}

// Causal grouped-query attention of the query rows q, at the last q.rows() of the keys.rows()
// positions, over the keys and values of all of them (a KV cache, or a whole sequence when training).
// probabilities(head, t) gives the first + t + 1 floats (first = keys.rows() - q.rows()) that take
// query t's softmax in that head: reused scratch for inference, the tape for training.
template <class Probabilities>
void causal_attention(AttentionHeads heads, MatrixView<const float> q, MatrixView<const float> keys,
                      MatrixView<const float> values, Probabilities&& probabilities, MatrixView<float> out) {
    for (std::size_t h = 0; h < heads.heads; ++h) {
        for (std::size_t t = 0; t < q.rows(); ++t) {
            attention_head(heads.of(q.row(t), h), keys, values, heads.kv_offset(h), probabilities(h, t),
                           heads.of(out.row(t), h));
        }
    }
}

// The backward of causal_attention: overwrites dq, dkeys and dvalues (shaped as q, keys, values)
// from dout and the forward's probabilities. Heads run in order and, within a head, queries in
// order, so each key's and value's gradient is summed in a fixed order.
template <class Probabilities>
void causal_attention_backward(AttentionHeads heads, MatrixView<const float> q, MatrixView<const float> keys,
                               MatrixView<const float> values, Probabilities&& probabilities,
                               MatrixView<const float> dout, std::span<float> dscores, MatrixView<float> dq,
                               MatrixView<float> dkeys, MatrixView<float> dvalues) {
    const std::size_t first = keys.rows() - q.rows();
    std::ranges::fill(dq.data(), 0.0f);
    std::ranges::fill(dkeys.data(), 0.0f);
    std::ranges::fill(dvalues.data(), 0.0f);
    for (std::size_t h = 0; h < heads.heads; ++h) {
        for (std::size_t t = 0; t < q.rows(); ++t) {
            attention_head_backward(heads.of(q.row(t), h), keys, values, heads.kv_offset(h), probabilities(h, t),
                                    heads.of(dout.row(t), h), dscores.first(first + t + 1), heads.of(dq.row(t), h),
                                    dkeys, dvalues);
        }
    }
}

}  // namespace multibool::llama
