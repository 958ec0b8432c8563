#pragma once
// AdamW (Loshchilov & Hutter): Adam with bias correction and weight decay decoupled from the
// gradient's moments. `AdamW` steps n float parameters; ScaleAdamW (scale_adamw.hpp) steps a
// matrix's scales with the same per-element update, detail::AdamWStep, so the two cannot drift.
//
// State (write_state / read_state), little-endian through BinaryWriter / BinaryReader:
//   u64 steps, u64 count, f32[count] first moments, u64 count, f32[count] second moments.
// Options are not state: the reader's own apply.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "multibool/core/binary_io.hpp"

namespace multibool {

struct AdamWOptions {
    float learning_rate;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float epsilon = 1e-8f;
    float weight_decay = 0.0f;  // decoupled: alpha <- alpha - lr * weight_decay * alpha
};

namespace detail {

// `who`: the class named in the message.
inline void check_adamw_options(const AdamWOptions& options, const std::string& who) {
    const bool valid = std::isfinite(options.learning_rate) && options.learning_rate >= 0 && options.beta1 >= 0 &&
                       options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1 && std::isfinite(options.epsilon) &&
                       options.epsilon > 0 && std::isfinite(options.weight_decay) && options.weight_decay >= 0;
    if (!valid) {
        throw std::invalid_argument(
            who +
            ": need a finite learning_rate >= 0, beta1 and beta2 in [0, 1), a finite epsilon > 0 and a finite "
            "weight_decay >= 0");
    }
}

// One element's step: new moments as stored (float) and the new value unrounded (double), so
// the caller rounds it once, to its own type (float parameters, half scales, ...).
struct AdamWUpdate {
    float first;
    float second;
    double value;
};

// The per-element update of step t (1-based); the bias corrections are computed once per step.
// Moments in double, rounded to float; the value from the rounded moments, as they are stored.
class AdamWStep {
public:
    AdamWStep(const AdamWOptions& options, std::size_t t)
        : options_(options),
          learning_rate_(options.learning_rate),
          first_correction_(1.0 - std::pow(double(options.beta1), double(t))),
          second_correction_(1.0 - std::pow(double(options.beta2), double(t))) {}

    [[nodiscard]] std::pair<float, float> moments(float first, float second, float gradient) const noexcept {
        const double g = gradient;
        return {static_cast<float>(options_.beta1 * double(first) + (1.0 - options_.beta1) * g),
                static_cast<float>(options_.beta2 * double(second) + (1.0 - options_.beta2) * g * g)};
    }
    [[nodiscard]] AdamWUpdate operator()(float first, float second, double value, float gradient) const noexcept {
        const auto [m, v] = moments(first, second, gradient);
        const double decayed = value - learning_rate_ * options_.weight_decay * value;
        const double corrected =
            (double(m) / first_correction_) / (std::sqrt(double(v) / second_correction_) + options_.epsilon);
        return {m, v, decayed - learning_rate_ * corrected};
    }

private:
    AdamWOptions options_;
    double learning_rate_;
    double first_correction_;
    double second_correction_;
};

// The state AdamW and ScaleAdamW share: the step count and two float moments per element.
struct AdamWMoments {
    explicit AdamWMoments(std::size_t count) : first(count, 0.0f), second(count, 0.0f) {}
    AdamWMoments(std::size_t step_count, std::vector<float> first_moments, std::vector<float> second_moments) noexcept
        : steps(step_count), first(std::move(first_moments)), second(std::move(second_moments)) {}

    // The per-element update of the next step.
    [[nodiscard]] AdamWStep next_step(const AdamWOptions& options) const { return AdamWStep(options, steps + 1); }
    // Takes that step's moments for every element and counts the step: called once every new
    // value has been formed and checked, so that a refused step changes nothing.
    void advance(const AdamWStep& update, std::span<const float> gradient) noexcept {
        for (std::size_t e = 0; e < first.size(); ++e) {
            std::tie(first[e], second[e]) = update.moments(first[e], second[e], gradient[e]);
        }
        ++steps;
    }
    // 8 bytes per element.
    [[nodiscard]] std::size_t bytes() const noexcept { return (first.size() + second.size()) * sizeof(float); }

    // The moments block of the state (format: top of this header).
    void write(BinaryWriter& writer) const {
        writer.write(std::uint64_t{steps});
        writer.write_counted(std::span<const float>(first));
        writer.write_counted(std::span<const float>(second));
    }

    std::size_t steps = 0;
    std::vector<float> first;   // m: running mean of the gradient
    std::vector<float> second;  // v: running mean of its square
};

// Refuses (std::invalid_argument) a gradient with a non-finite element; describe(e) names element e
// after `who`'s ": the gradient of ".
template <class Describe>
void check_finite_gradient(const char* who, std::span<const float> gradient, Describe&& describe) {
    for (std::size_t e = 0; e < gradient.size(); ++e) {
        if (!std::isfinite(gradient[e])) {
            throw std::invalid_argument(std::string(who) + ": the gradient of " + describe(e) + " is " +
                                        std::to_string(gradient[e]) + ", not a finite number");
        }
    }
}

// Reads and validates a moments block for `count` elements; FormatErrors name `who`'s field.
inline AdamWMoments read_adamw_moments(BinaryReader& reader, const std::string& who, std::size_t count) {
    const auto steps = reader.read<std::uint64_t>(who + " steps");
    // steps + 1 is the next step's t: it must not wrap.
    if (steps >= std::numeric_limits<std::size_t>::max()) {
        throw FormatError(reader.source(), who + " steps",
                          "a count below " + std::to_string(std::numeric_limits<std::size_t>::max()),
                          std::to_string(steps));
    }
    // Braces: the two blocks are read in the order written.
    AdamWMoments state{static_cast<std::size_t>(steps), reader.read_counted<float>(count, who + " first moment"),
                       reader.read_counted<float>(count, who + " second moment")};
    for (std::size_t e = 0; e < count; ++e) {
        // m is a running mean of finite gradients; v of their squares, which may overflow float to +inf.
        const float m = state.first[e], v = state.second[e];
        if (!std::isfinite(m)) {
            throw FormatError(reader.source(), who + " first moments", "finite values",
                              std::to_string(m) + " at element " + std::to_string(e));
        }
        if (!(v >= 0)) {
            throw FormatError(reader.source(), who + " second moments", "values >= 0",
                              std::to_string(v) + " at element " + std::to_string(e));
        }
        // Before the first step every moment is 0; a state claiming otherwise is not one we wrote.
        if (steps == 0 && (m != 0 || v != 0)) {
            throw FormatError(reader.source(), who + " moments", "0 at steps 0",
                              std::to_string(m) + ", " + std::to_string(v) + " at element " + std::to_string(e));
        }
    }
    return state;
}

}  // namespace detail

class AdamW {
public:
    // Zero moments for `parameters` parameters.
    AdamW(std::size_t parameters, AdamWOptions options) : options_(options), moments_(parameters) {
        detail::check_adamw_options(options, "AdamW");
    }

    // One AdamW step on every parameter, each rounded to float. All or nothing: a size mismatch,
    // a non-finite gradient or a non-finite new value is refused before anything changes.
    void step(std::span<float> parameters, std::span<const float> gradient) {
        const std::size_t n = moments_.first.size();
        if (parameters.size() != n || gradient.size() != n) {
            throw std::invalid_argument("AdamW::step: the optimizer holds moments for " + std::to_string(n) +
                                        " parameters, got " + std::to_string(parameters.size()) +
                                        " parameters and a gradient of " + std::to_string(gradient.size()));
        }
        detail::check_finite_gradient("AdamW::step", gradient,
                                      [](std::size_t e) { return "parameter " + std::to_string(e); });
        const detail::AdamWStep update = moments_.next_step(options_);
        // Every new value is formed and checked first, then everything is stored.
        std::vector<float> updated(n);
        for (std::size_t e = 0; e < n; ++e) {
            updated[e] =
                static_cast<float>(update(moments_.first[e], moments_.second[e], parameters[e], gradient[e]).value);
            if (!std::isfinite(updated[e])) {
                throw std::invalid_argument("AdamW::step: the new value of parameter " + std::to_string(e) + " is " +
                                            std::to_string(updated[e]) + " (from " + std::to_string(parameters[e]) +
                                            "), not a finite float");
            }
        }
        moments_.advance(update, gradient);
        std::copy(updated.begin(), updated.end(), parameters.begin());
    }

    // Everything a later step depends on besides the options (format: top of this header).
    void write_state(BinaryWriter& writer) const { moments_.write(writer); }
    // Refuses (FormatError) a state for another parameter count, non-finite moments or a bad step
    // count, before changing anything.
    void read_state(BinaryReader& reader) {
        moments_ = detail::read_adamw_moments(reader, "AdamW", moments_.first.size());
    }

    // The moments' bytes: 8 per parameter.
    [[nodiscard]] std::size_t state_bytes() const noexcept { return moments_.bytes(); }
    [[nodiscard]] std::size_t steps() const noexcept { return moments_.steps; }
    [[nodiscard]] std::size_t parameters() const noexcept { return moments_.first.size(); }
    [[nodiscard]] const AdamWOptions& options() const noexcept { return options_; }
    // A new learning rate from the next step on (a schedule's value); the moments are kept.
    void set_learning_rate(float learning_rate) {
        AdamWOptions changed = options_;
        changed.learning_rate = learning_rate;
        detail::check_adamw_options(changed, "AdamW::set_learning_rate");
        options_ = changed;
    }

private:
    AdamWOptions options_;
    detail::AdamWMoments moments_;
};

}  // namespace multibool
