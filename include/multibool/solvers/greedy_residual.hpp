#pragma once
// The greedy residual initializer (docs/METHOD.md §3): R <- W; for each kernel k, B_k = sign(R) with
// sign(0) = +1, alpha_k = mean |R| over each group, R <- R - A_k (.) B_k.
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

template <class Matrix>
Matrix greedy_residual(MatrixView<const float> weights) {
    using Scale = typename Matrix::scale_type;
    Matrix m(weights.rows(), weights.cols());
    std::vector<double> residual(weights.cols());
    for (std::size_t i = 0; i < weights.rows(); ++i) {
        for (std::size_t j = 0; j < weights.cols(); ++j) {
            const float w = weights(i, j);
            if (!std::isfinite(w)) {
                throw std::invalid_argument("greedy_residual: weight at row " + std::to_string(i) + " col " +
                                            std::to_string(j) + " of a " + std::to_string(weights.rows()) + "x" +
                                            std::to_string(weights.cols()) + " matrix is " + std::to_string(w) +
                                            ", not a finite number");
            }
            residual[j] = w;
        }
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                const std::size_t begin = m.group_begin(g);
                const std::size_t end = m.group_end(g);
                double sum_abs = 0.0;
                for (std::size_t j = begin; j < end; ++j) sum_abs += std::fabs(residual[j]);
                const double mean_abs = sum_abs / double(end - begin);
                const auto alpha = static_cast<Scale>(mean_abs);
                if (!is_finite(alpha)) {
                    throw std::invalid_argument("greedy_residual: kernel " + std::to_string(k) + " row " +
                                                std::to_string(i) + " group " + std::to_string(g) +
                                                " needs a scale of " + std::to_string(mean_abs) +
                                                ", beyond the range of the scale type");
                }
                m.set_scale(k, i, g, alpha);
                // The residual is taken against the stored, rounded scale (fp16 keeps 11 bits), so
                // later kernels correct the rounding error instead of inheriting it.
                const auto stored = static_cast<double>(alpha);
                for (std::size_t j = begin; j < end; ++j) {
                    const int s = residual[j] >= 0.0 ? 1 : -1;
                    m.set_sign(k, i, j, s);
                    residual[j] -= stored * s;
                }
            }
        }
    }
    return m;
}

}  // namespace multibool
