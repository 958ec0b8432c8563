#pragma once
// ScaleAdamW: the published recipe's gradient step on the scales (SPEC §5), AdamW (Loshchilov &
// Hutter) with bias correction and decoupled weight decay, on dL/dalpha from ScaleGradient. Its
// state is two float moments per scale, K * rows * groups_per_row of them, far fewer than weights.
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/training/scale_gradient.hpp"

namespace multibool {

struct AdamWOptions {
    float learning_rate;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float epsilon = 1e-8f;
    float weight_decay = 0.0f;  // decoupled: alpha <- alpha - lr * weight_decay * alpha
};

template <std::size_t K>
class ScaleAdamW {
public:
    static constexpr std::size_t kernels = K;

    // Zero moments for a matrix of `rows` rows and `groups_per_row` scale groups per row.
    ScaleAdamW(std::size_t rows, std::size_t groups_per_row, AdamWOptions options)
        : options_(options),
          rows_(rows),
          groups_(groups_per_row),
          first_(checked_product("ScaleAdamW", checked_product("ScaleAdamW", K, rows), groups_per_row), 0.0f),
          second_(first_.size(), 0.0f) {
        const bool valid = std::isfinite(options.learning_rate) && options.learning_rate >= 0 && options.beta1 >= 0 &&
                           options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1 &&
                           std::isfinite(options.epsilon) && options.epsilon > 0 &&
                           std::isfinite(options.weight_decay) && options.weight_decay >= 0;
        if (!valid) {
            throw std::invalid_argument(
                "ScaleAdamW: need a finite learning_rate >= 0, beta1 and beta2 in [0, 1), a finite epsilon > 0 and "
                "a finite weight_decay >= 0");
        }
    }
    template <BitPlaneStorage M>
        requires(M::kernels == K)
    ScaleAdamW(const M& m, AdamWOptions options) : ScaleAdamW(m.rows(), m.groups_per_row(), options) {}

    // One AdamW step on every scale of m, each written back rounded to M::scale_type. All or
    // nothing: a mismatched shape, a non-finite gradient or a scale the type cannot hold is
    // refused before m or the moments change.
    template <BitPlaneStorage M>
        requires(M::kernels == K)
    void step(M& m, const ScaleGradient<K>& gradient) {
        using Scale = typename M::scale_type;
        check_shapes(m, gradient);
        const auto values = gradient.data();
        for (std::size_t e = 0; e < values.size(); ++e) {
            if (!std::isfinite(values[e])) {
                throw std::invalid_argument("ScaleAdamW::step: the gradient of " + describe(e) + " is " +
                                            std::to_string(values[e]) + ", not a finite number");
            }
        }
        const std::size_t t = steps_ + 1;
        const double lr = options_.learning_rate;
        const double first_correction = 1.0 - std::pow(double(options_.beta1), double(t));
        const double second_correction = 1.0 - std::pow(double(options_.beta2), double(t));
        const auto moments = [&](std::size_t e) {
            const double g = values[e];
            return std::pair<float, float>(
                static_cast<float>(options_.beta1 * double(first_[e]) + (1.0 - options_.beta1) * g),
                static_cast<float>(options_.beta2 * double(second_[e]) + (1.0 - options_.beta2) * g * g));
        };
        // Every new scale is formed and checked first, then everything is stored.
        std::vector<Scale> updated(values.size());
        for (std::size_t e = 0; e < values.size(); ++e) {
            const auto [first, second] = moments(e);
            const double alpha = static_cast<double>(m.scales(e / (rows_ * groups_), e / groups_ % rows_)[e % groups_]);
            const double decayed = alpha - lr * options_.weight_decay * alpha;
            const double corrected =
                (double(first) / first_correction) / (std::sqrt(double(second) / second_correction) + options_.epsilon);
            updated[e] = static_cast<Scale>(decayed - lr * corrected);
            if (!std::isfinite(static_cast<double>(updated[e]))) {
                throw std::invalid_argument("ScaleAdamW::step: the new value of " + describe(e) +
                                            " does not fit the scale type");
            }
        }
        for (std::size_t e = 0; e < values.size(); ++e) {
            std::tie(first_[e], second_[e]) = moments(e);
            m.set_scale(e / (rows_ * groups_), e / groups_ % rows_, e % groups_, updated[e]);
        }
        steps_ = t;
    }

    // The moments' bytes: 8 per scale.
    [[nodiscard]] std::size_t state_bytes() const noexcept { return (first_.size() + second_.size()) * sizeof(float); }
    [[nodiscard]] std::size_t steps() const noexcept { return steps_; }
    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_; }
    [[nodiscard]] const AdamWOptions& options() const noexcept { return options_; }

private:
    template <BitPlaneStorage M>
    void check_shapes(const M& m, const ScaleGradient<K>& gradient) const {
        const auto held = [](std::size_t rows, std::size_t groups) {
            return std::to_string(rows) + " rows x " + std::to_string(groups) + " groups";
        };
        if (m.rows() != rows_ || m.groups_per_row() != groups_) {
            throw std::invalid_argument("ScaleAdamW::step: the optimizer holds moments for " + held(rows_, groups_) +
                                        ", the matrix has " + held(m.rows(), m.groups_per_row()));
        }
        if (gradient.rows() != rows_ || gradient.groups_per_row() != groups_) {
            throw std::invalid_argument("ScaleAdamW::step: the optimizer holds moments for " + held(rows_, groups_) +
                                        ", the gradient has " + held(gradient.rows(), gradient.groups_per_row()));
        }
    }

    [[nodiscard]] std::string describe(std::size_t e) const {
        return "scale (kernel " + std::to_string(e / (rows_ * groups_)) + ", row " +
               std::to_string(e / groups_ % rows_) + ", group " + std::to_string(e % groups_) + ")";
    }

    AdamWOptions options_;
    std::size_t rows_;
    std::size_t groups_;
    std::vector<float> first_;   // m: running mean of the gradient
    std::vector<float> second_;  // v: running mean of its square
    std::size_t steps_ = 0;
};

template <BitPlaneStorage M>
ScaleAdamW(const M&, AdamWOptions) -> ScaleAdamW<M::kernels>;

}  // namespace multibool
