#pragma once
// The element-wise pieces of the LLaMA block, shared by the inference forward (transformer.hpp)
// and the training pass (backprop.hpp) so that both compute the same floats.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include "multibool/core/matrix_view.hpp"

namespace multibool::llama {

inline constexpr float rms_norm_epsilon = 1e-5f;

// llama2.c's RMSNorm of one row: out = weight * x * r with r = 1 / sqrt(mean(x^2) + eps); returns r.
inline float rms_norm_row(std::span<const float> x, std::span<const float> weight, std::span<float> out) noexcept {
    float sum_squares = 0.0f;
    for (float e : x) sum_squares += e * e;
    const float inv = 1.0f / std::sqrt(sum_squares / float(x.size()) + rms_norm_epsilon);
    for (std::size_t j = 0; j < x.size(); ++j) out[j] = weight[j] * (inv * x[j]);
    return inv;
}

inline void rms_norm(MatrixView<const float> x, std::span<const float> weight, MatrixView<float> out) noexcept {
    for (std::size_t t = 0; t < x.rows(); ++t) rms_norm_row(x.row(t), weight, out.row(t));
}

// RoPE as llama2.c computes it in float: pair i of a head turns by pos / 10000^(i / head_size).
// rotation holds (cos, sin) of each pair's angle, head_size floats.
inline void set_rotation(std::span<float> rotation, std::size_t pos) noexcept {
    const std::size_t hs = rotation.size();
    for (std::size_t i = 0; i < hs; i += 2) {
        const float angle = float(pos) * (1.0f / std::pow(10000.0f, float(i) / float(hs)));
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

}  // namespace multibool::llama
