#pragma once
// Float checkpoint -> multi-Boolean model: every projection of every block through the
// library's initializer, with the reconstruction error and the honest bits per weight
// (padding and scales included) of each one.
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/transformer.hpp"
#include "multibool/nn/multibool_linear.hpp"
#include "multibool/solvers/greedy_residual.hpp"

namespace multibool::llama {

// Sizes and squared errors that add up across matrices.
struct ErrorTally {
    std::size_t weights = 0;
    std::size_t storage_bytes = 0;  // planes and scales
    double squared_error = 0.0;     // ||W - W_hat||_F^2
    double squared_norm = 0.0;      // ||W||_F^2

    [[nodiscard]] double bits_per_weight() const noexcept { return 8.0 * double(storage_bytes) / double(weights); }
    [[nodiscard]] double relative_error() const noexcept { return std::sqrt(squared_error / squared_norm); }
    ErrorTally& operator+=(const ErrorTally& other) noexcept {
        weights += other.weights;
        storage_bytes += other.storage_bytes;
        squared_error += other.squared_error;
        squared_norm += other.squared_norm;
        return *this;
    }
};

struct ProjectionReport {
    std::size_t layer = 0;
    Projection projection = Projection::wq;
    std::size_t rows = 0;
    std::size_t cols = 0;
    ErrorTally tally;
};

struct ConversionReport {
    std::size_t kernels = 0;
    std::size_t group_size = 0;
    std::string initializer;
    std::vector<ProjectionReport> projections;

    [[nodiscard]] ErrorTally total() const noexcept {
        ErrorTally sum;
        for (const auto& p : projections) sum += p.tally;
        return sum;
    }
};

template <std::size_t K, std::size_t G>
using BooleanTransformer = Transformer<MultiBoolLinear<K, G>>;

// How far a converted matrix is from the float weights, summed in double.
template <class Matrix>
ErrorTally reconstruction_error(MatrixView<const float> weights, const Matrix& m) {
    const std::vector<float> approx = m.dequantize();
    ErrorTally tally{approx.size(), m.storage_bytes(), 0.0, 0.0};
    for (std::size_t e = 0; e < approx.size(); ++e) {
        const double w = weights.data()[e];
        tally.squared_error += (w - approx[e]) * (w - approx[e]);
        tally.squared_norm += w * w;
    }
    return tally;
}

template <std::size_t K, std::size_t G>
std::pair<BooleanTransformer<K, G>, ConversionReport> convert(const Checkpoint& checkpoint) {
    using Linear = MultiBoolLinear<K, G>;
    ConversionReport report{K, G, "greedy residual", {}};
    auto model = BooleanTransformer<K, G>::from_checkpoint(checkpoint, [&](MatrixView<const float> weights,
                                                                           std::size_t layer, Projection p) {
        auto matrix = greedy_residual<typename Linear::matrix_type>(weights);
        report.projections.push_back({layer, p, weights.rows(), weights.cols(), reconstruction_error(weights, matrix)});
        return Linear(std::move(matrix));
    });
    return {std::move(model), std::move(report)};
}

}  // namespace multibool::llama
