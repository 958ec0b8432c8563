#pragma once
// Float checkpoint -> multi-Boolean model: every projection of every block through one of the
// library's initializers, with the reconstruction error and the honest bits per weight (padding
// and scales included) of each. Also the round-to-nearest baseline at the same group size.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "llama/calibration.hpp"
#include "llama/checkpoint.hpp"
#include "llama/sensitivity.hpp"
#include "llama/transformer.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "multibool/nn/multibool_linear.hpp"
#include "multibool/nn/row_column_linear.hpp"
#include "multibool/nn/variable_kernel_linear.hpp"
#include "multibool/solvers/alternating_refinement.hpp"
#include "multibool/solvers/gptq.hpp"
#include "multibool/solvers/greedy_residual.hpp"
#include "multibool/solvers/kernel_allocation.hpp"
#include "multibool/solvers/output_space_refinement.hpp"
#include "multibool/solvers/round_to_nearest.hpp"
#include "multibool/solvers/row_column_refinement.hpp"
#include "multibool/solvers/second_moment.hpp"
#include "multibool/solvers/svid.hpp"

namespace multibool::llama {

enum class Initializer { greedy, alternating, activation_aware };

inline const char* initializer_name(Initializer i) noexcept {
    switch (i) {
        case Initializer::greedy:
            return "greedy";
        case Initializer::alternating:
            return "alternating";
        case Initializer::activation_aware:
            return "act-aware";
    }
    return "?";
}

struct ConversionOptions {
    Initializer initializer = Initializer::greedy;
    std::size_t iterations = 10;  // alternating refinement rounds
    // Borrowed: the caller keeps the statistics alive during the conversion. Required by activation_aware.
    std::optional<std::reference_wrapper<const CalibrationStatistics>> calibration;
    // Borrowed too: when given, a bit budget weighs each projection's candidates by their KL
    // sensitivity (sensitivity.hpp) instead of their squared output error.
    std::optional<std::reference_wrapper<const KlSensitivity>> sensitivity;
    // act-aware's starts: the error-feedback one lowers the converted model's perplexity at K >= 2
    // (examples/README.md, "Figures"); fine-tuning leaves it out ("Fine-tuning": the fine-tuned
    // model ends worse from it).
    ActivationAwareStarts starts{.error_feedback = true};
};

// Sizes and squared errors that add up across matrices. The output-space error
// E||(W - W_hat) x||^2 = sum_i (w_i - w_hat_i)^T H (w_i - w_hat_i) is filled in when
// calibration statistics are at hand (NaN otherwise).
struct ErrorTally {
    std::size_t weights = 0;
    std::size_t storage_bytes = 0;  // planes and scales
    double squared_error = 0.0;     // ||W - W_hat||_F^2
    double squared_norm = 0.0;      // ||W||_F^2
    double output_error = std::numeric_limits<double>::quiet_NaN();
    double output_norm = std::numeric_limits<double>::quiet_NaN();

    [[nodiscard]] double bits_per_weight() const noexcept { return 8.0 * double(storage_bytes) / double(weights); }
    [[nodiscard]] double relative_error() const noexcept { return std::sqrt(squared_error / squared_norm); }
    [[nodiscard]] double relative_output_error() const noexcept { return std::sqrt(output_error / output_norm); }
    ErrorTally& operator+=(const ErrorTally& other) noexcept {
        weights += other.weights;
        storage_bytes += other.storage_bytes;
        squared_error += other.squared_error;
        squared_norm += other.squared_norm;
        output_error += other.output_error;
        output_norm += other.output_norm;
        return *this;
    }
};

struct ProjectionReport {
    std::size_t layer = 0;
    Projection projection = Projection::wq;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t kernels = 0;  // 0 for the round-to-nearest baseline
    ErrorTally tally;
};

struct ConversionReport {
    std::string method;  // e.g. "act-aware, group scales, G=64" or "RTN 3-bit, G=64"
    std::vector<ProjectionReport> projections;

    [[nodiscard]] ErrorTally total() const noexcept {
        ErrorTally sum;
        sum.output_error = sum.output_norm = 0.0;  // stays NaN if any projection has none
        for (const auto& p : projections) sum += p.tally;
        return sum;
    }
};

// How far an approximation (row-major, dequantized) is from the float weights, in double.
inline ErrorTally reconstruction_error(MatrixView<const float> weights, std::span<const float> approx,
                                       std::size_t storage_bytes, const SecondMoment* h) {
    ErrorTally tally;
    tally.weights = approx.size();
    tally.storage_bytes = storage_bytes;
    const std::size_t n = weights.cols();
    const std::vector<double> dense = h != nullptr ? h->dense() : std::vector<double>();
    std::vector<double> diff(n);
    for (std::size_t i = 0; i < weights.rows(); ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            const double w = weights(i, j);
            diff[j] = w - approx[i * n + j];
            tally.squared_error += diff[j] * diff[j];
            tally.squared_norm += w * w;
        }
        if (h == nullptr) continue;
        if (i == 0) tally.output_error = tally.output_norm = 0.0;
        for (std::size_t a = 0; a < n; ++a) {
            double hd = 0.0;
            double hw = 0.0;
            for (std::size_t b = 0; b < n; ++b) {
                hd += dense[a * n + b] * diff[b];
                hw += dense[a * n + b] * double(weights(i, b));
            }
            tally.output_error += diff[a] * hd;
            tally.output_norm += double(weights(i, a)) * hw;
        }
    }
    return tally;
}

inline const SecondMoment* calibration_of(const ConversionOptions& options, std::size_t layer, Projection p) {
    return options.calibration ? &options.calibration->get().of(layer, p) : nullptr;
}

// A group-scale matrix from float weights with the chosen initializer.
template <class Matrix>
Matrix initialize(MatrixView<const float> weights, const ConversionOptions& options, const SecondMoment* h) {
    switch (options.initializer) {
        case Initializer::greedy:
            return greedy_residual<Matrix>(weights);
        case Initializer::alternating:
            return alternating_init<Matrix>(weights, options.iterations);
        case Initializer::activation_aware: {
            if (h == nullptr) throw std::invalid_argument("initialize: act-aware needs calibration statistics");
            Matrix m = activation_aware_init<Matrix>(weights, *h, options.iterations, options.starts);
            output_space_refinement(m, weights, *h, options.iterations);
            return m;
        }
    }
    throw std::logic_error("initialize: unknown initializer");
}

// Converts every projection with make(weights, layer, projection, report entry) -> Linear.
template <class Linear, class Make>
std::pair<Transformer<Linear>, ConversionReport> convert_with(const Checkpoint& checkpoint, std::string method,
                                                              Make&& make) {
    ConversionReport report{std::move(method), {}};
    auto model = Transformer<Linear>::from_checkpoint(
        checkpoint, [&](MatrixView<const float> weights, std::size_t layer, Projection p) {
            ProjectionReport entry{layer, p, weights.rows(), weights.cols(), 0, ErrorTally{}};
            Linear linear = make(weights, layer, p, entry);
            report.projections.push_back(entry);
            return linear;
        });
    return {std::move(model), std::move(report)};
}

template <std::size_t K, std::size_t G, class Scale = half, class Backend = DefaultBackend>
using BooleanLinear = MultiBoolLinear<K, G, Scale, std::uint64_t, Backend>;
template <std::size_t K, std::size_t G, class Scale = half, class Backend = DefaultBackend>
using BooleanTransformer = Transformer<BooleanLinear<K, G, Scale, Backend>>;

inline std::string group_method(const ConversionOptions& options, std::size_t group) {
    return std::string(initializer_name(options.initializer)) + ", group scales, G=" + std::to_string(group);
}

// K kernels everywhere, one scale per group of G columns.
template <std::size_t K, std::size_t G, class Scale = half, class Backend = DefaultBackend>
std::pair<BooleanTransformer<K, G, Scale, Backend>, ConversionReport> convert(const Checkpoint& checkpoint,
                                                                              const ConversionOptions& options = {}) {
    using Linear = BooleanLinear<K, G, Scale, Backend>;
    return convert_with<Linear>(
        checkpoint, group_method(options, G),
        [&](MatrixView<const float> w, std::size_t layer, Projection p, ProjectionReport& entry) {
            const SecondMoment* h = calibration_of(options, layer, p);
            auto m = initialize<typename Linear::matrix_type>(w, options, h);
            entry.kernels = K;
            entry.tally = reconstruction_error(w, m.dequantize(), m.storage_bytes(), h);
            return Linear(std::move(m));
        });
}

// K kernels everywhere with row x column scales (SVID start, then closed-form refinement).
template <std::size_t K>
std::pair<Transformer<RowColumnLinear<K>>, ConversionReport> convert_row_column(const Checkpoint& checkpoint,
                                                                                const ConversionOptions& options = {}) {
    using Linear = RowColumnLinear<K>;
    if (options.initializer == Initializer::activation_aware) {
        throw std::invalid_argument("row x column scales support the greedy (SVID) and alternating initializers");
    }
    const std::string method =
        std::string(options.initializer == Initializer::greedy ? "svid" : "svid+alternating") + ", row x column scales";
    return convert_with<Linear>(
        checkpoint, method, [&](MatrixView<const float> w, std::size_t layer, Projection p, ProjectionReport& entry) {
            auto m = svid_residual<typename Linear::matrix_type>(w);
            if (options.initializer == Initializer::alternating) refine_row_column(m, w, options.iterations);
            entry.kernels = K;
            entry.tally = reconstruction_error(w, m.dequantize(), m.storage_bytes(), calibration_of(options, layer, p));
            return Linear(std::move(m));
        });
}

template <std::size_t G, class Scale = half>
using BudgetLinear = VariableKernelLinear<G, 4, Scale, std::uint64_t, DefaultBackend>;

// Refuses (std::invalid_argument) a budget below K = 1 everywhere, the least any allocation
// stores, from the model's shapes alone: before minutes of conversion, not after them.
template <std::size_t G, class Scale = half>
void check_budget(const Config& c, double bits_per_weight) {
    using One = BitPlaneMatrix<1, G, Scale>;
    double weights = 0, least_bits = 0;
    for (Projection p : projections) {
        const auto [rows, cols] = projection_shape(c, p);
        weights += double(c.n_layers) * double(rows) * double(cols);
        least_bits += 8.0 * double(c.n_layers) *
                      double(One::word_count(rows, cols) * sizeof(typename One::word_type) +
                             One::scale_count(rows, cols) * sizeof(Scale));
    }
    if (!std::isfinite(bits_per_weight) || bits_per_weight * weights < least_bits) {
        throw std::invalid_argument("a budget of " + std::to_string(bits_per_weight) + " bits per weight is below " +
                                    std::to_string(least_bits / weights) +
                                    ", the least any allocation stores (every projection at K=1)");
    }
}

// Kernels per projection under an average bits-per-weight budget: every projection
// is converted at K = 1..4, and the allocator picks the K of each that minimises the summed
// error (output-space when calibrated, else Frobenius) within the budget.
template <std::size_t G, class Scale = half>
std::pair<Transformer<BudgetLinear<G, Scale>>, ConversionReport> convert_to_budget(
    const Checkpoint& checkpoint, double bits_per_weight, const ConversionOptions& options = {}) {
    using Linear = BudgetLinear<G, Scale>;
    check_budget<G, Scale>(checkpoint.config(), bits_per_weight);
    struct Candidates {
        std::vector<Linear> layers;
        std::vector<ErrorTally> tallies;
    };
    std::vector<Candidates> candidates;
    std::vector<LayerKernelOptions> costs;
    const Config& c = checkpoint.config();
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        for (Projection p : projections) {
            const MatrixView<const float> w = checkpoint_projection(checkpoint, l, p);
            const SecondMoment* h = calibration_of(options, l, p);
            Candidates& candidate = candidates.emplace_back();
            LayerKernelOptions& cost = costs.emplace_back();
            cost.weights = w.rows() * w.cols();
            for (std::size_t k = 1; k <= Linear::max_kernels; ++k) {
                ErrorTally tally;
                double sensitivity = 0.0;
                candidate.layers.push_back(Linear::with_kernels(k, [&]<std::size_t K>() {
                    using Boolean = MultiBoolLinear<K, G, Scale, std::uint64_t, DefaultBackend>;
                    auto m = initialize<typename Boolean::matrix_type>(w, options, h);
                    std::vector<float> approx = m.dequantize();
                    tally = reconstruction_error(w, approx, m.storage_bytes(), h);
                    if (options.sensitivity) sensitivity = options.sensitivity->get().of(l, p, std::move(approx));
                    return Boolean(std::move(m));
                }));
                candidate.tallies.push_back(tally);
                cost.cost_bits.push_back(std::uint64_t{8} * tally.storage_bytes);
                // Without a sensitivity, the summed squared error at each layer's output.
                cost.error.push_back(options.sensitivity ? sensitivity
                                     : h != nullptr      ? tally.output_error
                                                         : tally.squared_error);
            }
        }
    }
    const KernelAllocation allocation = allocate_kernels(costs, bits_per_weight);
    std::size_t next = 0;
    ConversionReport report;
    char budget[64];
    std::snprintf(budget, sizeof budget, ", budget %.3g bits/weight", bits_per_weight);
    report.method = group_method(options, G) + budget + " (" +
                    (allocation.solver == AllocationSolver::exact ? "exact" : "greedy") + " allocation)";
    auto model = Transformer<Linear>::from_checkpoint(
        checkpoint, [&](MatrixView<const float> w, std::size_t layer, Projection p) {
            const std::size_t k = allocation.kernels[next];
            report.projections.push_back({layer, p, w.rows(), w.cols(), k, candidates[next].tallies[k - 1]});
            return std::move(candidates[next++].layers[k - 1]);
        });
    return {std::move(model), std::move(report)};
}

// The round-to-nearest baseline: asymmetric b-bit codes with an fp16 (scale, minimum) per group
// of G columns, run as float layers holding the dequantized weights (accuracy only).
inline std::pair<Transformer<DenseLinear>, ConversionReport> convert_round_to_nearest(
    const Checkpoint& checkpoint, std::size_t bits, std::size_t group, const ConversionOptions& options = {}) {
    return convert_with<DenseLinear>(
        checkpoint, "RTN " + std::to_string(bits) + "-bit, G=" + std::to_string(group),
        [&](MatrixView<const float> w, std::size_t layer, Projection p, ProjectionReport& entry) {
            const RoundToNearestMatrix q = round_to_nearest(w, bits, group);
            std::vector<float> approx = q.dequantize();
            entry.tally = reconstruction_error(w, approx, q.storage_bytes(), calibration_of(options, layer, p));
            return DenseLinear(std::move(approx), w.rows(), w.cols());
        });
}

// The GPTQ baseline (solvers/gptq.hpp): b-bit codes with an fp16 scale and integer zero per group
// of G columns, chosen column by column under each projection's calibration statistics, run as
// float layers holding the dequantized weights (accuracy only). Needs options.calibration.
inline std::pair<Transformer<DenseLinear>, ConversionReport> convert_gptq(const Checkpoint& checkpoint,
                                                                          std::size_t bits, std::size_t group,
                                                                          const ConversionOptions& options) {
    if (!options.calibration) throw std::invalid_argument("convert_gptq: GPTQ needs calibration statistics");
    return convert_with<DenseLinear>(
        checkpoint, "GPTQ " + std::to_string(bits) + "-bit, G=" + std::to_string(group),
        [&](MatrixView<const float> w, std::size_t layer, Projection p, ProjectionReport& entry) {
            const SecondMoment* h = calibration_of(options, layer, p);
            const GptqMatrix q = gptq(w, h->dense(), {bits, group});
            std::vector<float> approx = q.dequantize();
            entry.tally = reconstruction_error(w, approx, q.storage_bytes(), h);
            return DenseLinear(std::move(approx), w.rows(), w.cols());
        });
}

}  // namespace multibool::llama
