#pragma once
// SecondMoment: H = E[x x^T] over calibration inputs, the metric in which activation-aware and
// output-space solvers measure a weight error ((w - w_hat)^T H (w - w_hat) = E[((w - w_hat) x)^2]).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

class SecondMoment {
public:
    explicit SecondMoment(std::size_t dimension)
        : dimension_(dimension), sums_(checked_product("SecondMoment", dimension, dimension + 1) / 2, 0.0) {}

    // Adds one input vector.
    void accumulate(std::span<const float> x) {
        check_length("SecondMoment::accumulate", "input", dimension_, x.size());
        accumulate(MatrixView<const float>(x, 1, x.size()));
    }

    // Adds every row of xs as one input. All-or-nothing: a batch with a non-finite value is
    // refused before anything is added.
    void accumulate(MatrixView<const float> xs) {
        check_length("SecondMoment::accumulate", "each input row", dimension_, xs.cols());
        for (std::size_t t = 0; t < xs.rows(); ++t) {
            for (std::size_t j = 0; j < dimension_; ++j) {
                if (!std::isfinite(xs(t, j))) {
                    throw std::invalid_argument("SecondMoment::accumulate: input " + std::to_string(t) + " element " +
                                                std::to_string(j) + " is " + std::to_string(xs(t, j)) +
                                                ", not a finite number");
                }
            }
        }
        // A block of inputs in double; each row of the upper triangle then stays in cache while
        // the whole block is added to it, so the triangle is streamed once per block, not per input.
        std::vector<double> block(std::min(xs.rows(), block_rows) * dimension_);
        for (std::size_t first = 0; first < xs.rows(); first += block_rows) {
            const std::size_t count = std::min(block_rows, xs.rows() - first);
            for (std::size_t t = 0; t < count; ++t) {
                std::copy(xs.row(first + t).begin(), xs.row(first + t).end(), block.begin() + t * dimension_);
            }
            for (std::size_t i = 0; i < dimension_; ++i) {
                double* const sums = sums_.data() + row_offset(i) - i;  // sums[j] is entry (i, j), j >= i
                std::size_t t = 0;
                // Four inputs per pass: four multiply-adds per load and store of the sums.
                for (; t + 4 <= count; t += 4) {
                    const double* const x0 = block.data() + t * dimension_;
                    const double* const x1 = x0 + dimension_;
                    const double* const x2 = x1 + dimension_;
                    const double* const x3 = x2 + dimension_;
                    const double a0 = x0[i], a1 = x1[i], a2 = x2[i], a3 = x3[i];
                    for (std::size_t j = i; j < dimension_; ++j) {
                        sums[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j];
                    }
                }
                for (; t < count; ++t) {
                    const double* const x = block.data() + t * dimension_;
                    const double a = x[i];
                    for (std::size_t j = i; j < dimension_; ++j) sums[j] += a * x[j];
                }
            }
        }
        samples_ += xs.rows();
    }

    [[nodiscard]] std::size_t dimension() const noexcept { return dimension_; }
    [[nodiscard]] std::size_t samples() const noexcept { return samples_; }

    // E[x_i x_j] over the inputs seen so far; 0 before any input.
    [[nodiscard]] double operator()(std::size_t i, std::size_t j) const {
        if (i >= dimension_ || j >= dimension_) {
            throw std::out_of_range("SecondMoment: entry (" + std::to_string(i) + ", " + std::to_string(j) +
                                    ") is outside the " + std::to_string(dimension_) + "x" +
                                    std::to_string(dimension_) + " matrix");
        }
        if (samples_ == 0) return 0.0;
        const std::size_t lo = std::min(i, j);
        const std::size_t hi = std::max(i, j);
        return sums_[row_offset(lo) + (hi - lo)] / double(samples_);
    }

    // The whole symmetric matrix of means, row-major n x n: what solvers that use every entry read.
    [[nodiscard]] std::vector<double> dense() const {
        std::vector<double> h(checked_product("SecondMoment::dense", dimension_, dimension_), 0.0);
        if (samples_ == 0) return h;
        for (std::size_t i = 0; i < dimension_; ++i) {
            const double* const sums = sums_.data() + row_offset(i) - i;
            for (std::size_t j = i; j < dimension_; ++j)
                h[i * dimension_ + j] = h[j * dimension_ + i] = sums[j] / double(samples_);
        }
        return h;
    }

private:
    static constexpr std::size_t block_rows = 32;

    // The upper triangle is stored row by row: row i holds entries (i, i) .. (i, n - 1).
    [[nodiscard]] std::size_t row_offset(std::size_t i) const noexcept { return i * (2 * dimension_ + 1 - i) / 2; }

    std::size_t dimension_ = 0;
    std::size_t samples_ = 0;
    std::vector<double> sums_;
};

}  // namespace multibool
