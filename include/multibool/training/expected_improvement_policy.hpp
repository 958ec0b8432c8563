#pragma once
// ExpectedImprovementPolicy: the stateless, probabilistic flip rule (docs/METHOD.md §5, §6). A bit of a
// trainable kernel is a candidate when its first-order loss change dL is negative, and flips with
// probability min(1, eta * (-dL) / tau), its uniform draw keyed by (seed, step, layer, kernel,
// row, column). tau is a running mean of the mean -dL over candidates, so eta reads as the flip
// probability of an average candidate whatever the gradient's scale. No per-weight state.
//
// State (write_state / read_state): f64 tau. The options are not state: the reader's own apply.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/training/counter_random.hpp"
#include "multibool/training/flip_optimizer.hpp"

namespace multibool {

struct ExpectedImprovementOptions {
    std::uint64_t seed = 0;
    double eta = 0.01;
    // tau for the first step. 0: the first step flips nothing and only measures tau, because a
    // value measured from the step's own tiles would depend on the order they arrive in.
    double initial_tau = 0.0;
    // tau <- momentum * tau + (1 - momentum) * (this step's mean -dL over candidates), in end_step.
    double tau_momentum = 0.9;
    // At most ceil(fraction * cols) flips per (row, kernel) and step, the ones with the largest
    // -dL (ties: lower column): per row, so the cap does not depend on the tiling. 1: no cap.
    double max_flip_fraction = 1.0;
    // The limit eta -> infinity: every candidate flips (subject to the cap), tau is not used.
    bool deterministic = false;
    TrainableKernels trainable = TrainableKernels::last();
};

class ExpectedImprovementPolicy {
public:
    explicit ExpectedImprovementPolicy(ExpectedImprovementOptions options = {})
        : options_(options), tau_(options.initial_tau) {
        if (!(options.eta >= 0) || !(options.initial_tau >= 0) || !std::isfinite(options.initial_tau) ||
            !(options.tau_momentum >= 0 && options.tau_momentum <= 1) ||
            !(options.max_flip_fraction >= 0 && options.max_flip_fraction <= 1)) {
            throw std::invalid_argument(
                "ExpectedImprovementPolicy: need eta >= 0, finite initial_tau >= 0, tau_momentum and "
                "max_flip_fraction in [0, 1]");
        }
    }

    void begin_step(FlipContext context) noexcept { context_ = context; }

    // A new eta from the next apply() on (a schedule's value); tau is kept.
    void set_eta(double eta) {
        if (!(eta >= 0)) {
            throw std::invalid_argument("ExpectedImprovementPolicy::set_eta: need eta >= 0, found " +
                                        std::to_string(eta));
        }
        options_.eta = eta;
    }

    // Const and touching only rows [first_row, first_row + tile.rows()) of m: safe to call
    // concurrently for disjoint row ranges.
    template <BitPlaneStorage M>
    FlipStatistics apply(M& m, std::size_t first_row, MatrixView<const float> gradient_tile) const {
        check_gradient_tile(m, first_row, gradient_tile, "ExpectedImprovementPolicy::apply");
        constexpr std::size_t K = M::kernels;
        const std::size_t cols = m.cols();
        const auto cap = static_cast<std::size_t>(std::ceil(options_.max_flip_fraction * double(cols)));
        FlipStatistics stats;
        std::vector<Chosen> chosen;
        for (std::size_t r = 0; r < gradient_tile.rows(); ++r) {
            const std::size_t i = first_row + r;
            const auto gradient = gradient_tile.row(r);
            for (std::size_t k = 0; k < K; ++k) {
                if (!options_.trainable.contains(k, K)) continue;
                chosen.clear();
                const auto plane = m.plane_row(k, i);
                const auto alphas = m.scales(k, i);
                const std::uint64_t row_hash = counter_row_hash(options_.seed, context_.step, context_.layer, k, i);
                std::size_t candidates = 0;
                ExactSum candidate_gain;  // a local: its carry chain stays in registers
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    const auto alpha = static_cast<float>(alphas[g]);
                    for (std::size_t j = m.group_begin(g); j < m.group_end(g); j += 64) {
                        const std::size_t count = std::min<std::size_t>(64, m.group_end(g) - j);
                        std::array<float, 64> gains;
                        flip_gains(alpha, bits_at(plane, j), gradient.data() + j, count, gains.data(), candidates,
                                   candidate_gain);
                        for (std::uint64_t chosen_bits = selected(row_hash, j, std::span(gains).first(count));
                             chosen_bits != 0; chosen_bits &= chosen_bits - 1) {
                            const auto b = static_cast<std::size_t>(std::countr_zero(chosen_bits));
                            chosen.push_back({gains[b], j + b});
                        }
                    }
                }
                stats.kernel_candidates[k] += candidates;
                stats.candidate_gain += candidate_gain;
                if (chosen.size() > cap) {
                    // A strict total order, so the kept set is unique.
                    std::nth_element(chosen.begin(), chosen.begin() + std::ptrdiff_t(cap), chosen.end(),
                                     [](const Chosen& a, const Chosen& b) {
                                         return a.gain != b.gain ? a.gain > b.gain : a.column < b.column;
                                     });
                    chosen.resize(cap);
                }
                for (const Chosen& c : chosen) {
                    m.flip(k, i, c.column);
                    stats.flip_gain.add(c.gain);
                }
                stats.kernel_flips[k] += chosen.size();
                stats.kernel_bits[k] += cols;
            }
        }
        return stats;
    }

    // Folds the step's mean -dL over candidates into tau (the first measurement sets it).
    void end_step(const FlipStatistics& total) noexcept {
        if (total.candidates() == 0) return;
        const double mean = total.mean_candidate_gain();
        tau_ = tau_ == 0 ? mean : options_.tau_momentum * tau_ + (1 - options_.tau_momentum) * mean;
    }

    // tau is all a later step depends on besides the options and the step's context.
    void write_state(BinaryWriter& writer) const { writer.write(tau_); }
    // Refuses (FormatError) a tau that is negative or not finite, leaving the policy unchanged.
    void read_state(BinaryReader& reader) {
        const auto tau = reader.read<double>("ExpectedImprovementPolicy tau");
        if (!(tau >= 0) || !std::isfinite(tau)) {
            throw FormatError(reader.source(), "ExpectedImprovementPolicy tau", "a finite value >= 0",
                              std::to_string(tau));
        }
        tau_ = tau;
    }

    [[nodiscard]] static constexpr double state_bytes_per_weight() noexcept { return 0.0; }
    // 0 until a step has measured it (when no initial_tau was given).
    [[nodiscard]] double tau() const noexcept { return tau_; }
    [[nodiscard]] const ExpectedImprovementOptions& options() const noexcept { return options_; }

private:
    struct Chosen {
        float gain;  // -dL
        std::size_t column;
    };

    // Bit b set: the candidate of column j + b (gains[b] = -dL > 0) flips. Each column's draw and
    // comparison go through loops without branches, which the compiler vectorizes.
    [[nodiscard]] std::uint64_t selected(std::uint64_t row_hash, std::size_t j,
                                         std::span<const float> gains) const noexcept {
        std::uint64_t chosen = 0;
        if (options_.deterministic) {
            for (std::size_t b = 0; b < gains.size(); ++b) chosen |= std::uint64_t{gains[b] > 0} << b;
            return chosen;
        }
        if (tau_ == 0) return 0;  // still measuring tau
        std::array<double, 64> draws;
        for (std::size_t b = 0; b < gains.size(); ++b) draws[b] = counter_uniform_in_row(row_hash, j + b);
        for (std::size_t b = 0; b < gains.size(); ++b) {
            const double probability = options_.eta * double(gains[b]) / tau_;
            // Bitwise, not short-circuit: half the columns are candidates, at random.
            const bool flips = (gains[b] > 0) & ((probability >= 1) | (draws[b] < probability));
            chosen |= std::uint64_t{flips} << b;
        }
        return chosen;
    }

    ExpectedImprovementOptions options_;
    double tau_;
    FlipContext context_{};
};

}  // namespace multibool
