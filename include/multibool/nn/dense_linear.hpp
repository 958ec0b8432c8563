#pragma once
// A float32 linear layer: the teacher and the baseline every Boolean layer is compared with.
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

class DenseLinear {
public:
    DenseLinear() = default;
    explicit DenseLinear(MatrixView<const float> weights)
        : DenseLinear(std::vector<float>(weights.data().begin(), weights.data().end()), weights.rows(),
                      weights.cols()) {}
    // Takes ownership of a row-major rows x cols buffer without copying it.
    DenseLinear(std::vector<float> weights, std::size_t rows, std::size_t cols)
        : rows_(rows), cols_(cols), weights_(std::move(weights)) {
        check_length("DenseLinear", "the weight buffer", checked_product("DenseLinear", rows, cols), weights_.size());
        for (std::size_t e = 0; e < weights_.size(); ++e) {
            if (!std::isfinite(weights_[e])) {
                throw std::invalid_argument("DenseLinear: weight at row " + std::to_string(e / cols_) + " col " +
                                            std::to_string(e % cols_) + " is " + std::to_string(weights_[e]) +
                                            ", not a finite number");
            }
        }
    }

    [[nodiscard]] std::size_t in_features() const noexcept { return cols_; }
    [[nodiscard]] std::size_t out_features() const noexcept { return rows_; }
    [[nodiscard]] MatrixView<const float> weights() const { return {std::span<const float>(weights_), rows_, cols_}; }
    // In place, for training; the shape is fixed.
    [[nodiscard]] MatrixView<float> weights() noexcept { return {std::span<float>(weights_), rows_, cols_}; }

    void forward(std::span<const float> x, std::span<float> y) const {
        check_length("DenseLinear::forward", "x", cols_, x.size());
        check_length("DenseLinear::forward", "y", rows_, y.size());
        for (std::size_t i = 0; i < rows_; ++i) {
            const float* w = weights_.data() + i * cols_;
            // Independent partial sums let the compiler keep them in one vector register without
            // -ffast-math; explicit fma keeps the rounding the same wherever this is inlined.
            std::array<float, 16> partial{};
            std::size_t j = 0;
            for (; j + partial.size() <= cols_; j += partial.size()) {
                for (std::size_t l = 0; l < partial.size(); ++l) partial[l] = std::fma(w[j + l], x[j + l], partial[l]);
            }
            float acc = 0.0f;
            for (float p : partial) acc += p;
            for (; j < cols_; ++j) acc = std::fma(w[j], x[j], acc);
            y[i] = acc;
        }
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        check_length("DenseLinear::forward", "rows of Y (tokens)", xs.rows(), ys.rows());
        for (std::size_t t = 0; t < xs.rows(); ++t) forward(xs.row(t), ys.row(t));
    }
    void backward_input(std::span<const float> dy, std::span<float> dx) const {
        check_length("DenseLinear::backward_input", "dy", rows_, dy.size());
        check_length("DenseLinear::backward_input", "dx", cols_, dx.size());
        std::fill(dx.begin(), dx.end(), 0.0f);
        for (std::size_t i = 0; i < rows_; ++i) {
            const float* w = weights_.data() + i * cols_;
            for (std::size_t j = 0; j < cols_; ++j) dx[j] = std::fma(w[j], dy[i], dx[j]);
        }
    }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
        check_length("DenseLinear::backward_input", "rows of dX (tokens)", dys.rows(), dxs.rows());
        for (std::size_t t = 0; t < dys.rows(); ++t) backward_input(dys.row(t), dxs.row(t));
    }

private:
    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
    std::vector<float> weights_;
};

}  // namespace multibool
