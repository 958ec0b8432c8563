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
        std::size_t i = 0;
        for (; i + row_block <= rows_; i += row_block) rows_forward<row_block>(i, x, y);
        for (; i < rows_; ++i) rows_forward<1>(i, x, y);
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
    // Rows computed together: their sums are independent, so the additions that end each row
    // (a chain of 16 on narrow layers) overlap instead of waiting on one another.
    static constexpr std::size_t row_block = 4;
    static constexpr std::size_t lanes = 16;

    // y_i = W_i . x for rows [first, first + Rows). Per row: lanes independent partial sums let
    // the compiler keep them in one vector register without -ffast-math, explicit fma keeps the
    // rounding the same wherever this is inlined, and the partials are then added in lane order:
    // the same arithmetic for any Rows.
    template <std::size_t Rows>
    void rows_forward(std::size_t first, std::span<const float> x, std::span<float> y) const noexcept {
        std::array<const float*, Rows> w;
        for (std::size_t r = 0; r < Rows; ++r) w[r] = weights_.data() + (first + r) * cols_;
        std::array<std::array<float, lanes>, Rows> partial{};
        std::size_t j = 0;
        for (; j + lanes <= cols_; j += lanes) {
            for (std::size_t r = 0; r < Rows; ++r) {
                for (std::size_t l = 0; l < lanes; ++l) partial[r][l] = std::fma(w[r][j + l], x[j + l], partial[r][l]);
            }
        }
        std::array<float, Rows> acc{};
        for (std::size_t l = 0; l < lanes; ++l) {
            for (std::size_t r = 0; r < Rows; ++r) acc[r] += partial[r][l];
        }
        for (; j < cols_; ++j) {
            for (std::size_t r = 0; r < Rows; ++r) acc[r] = std::fma(w[r][j], x[j], acc[r]);
        }
        for (std::size_t r = 0; r < Rows; ++r) y[first + r] = acc[r];
    }

    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
    std::vector<float> weights_;
};

}  // namespace multibool
