#pragma once
// BoldPolicy: the BOLD accumulator rule as published (docs/METHOD.md §5), for the bits of the trainable
// kernels: m <- beta_t * m + eta * q, flip where m * b >= 1, then m <- 0 there; beta_t is the
// fraction of trainable bits not flipped at the previous step (beta_1 = 0).
//
// Sign convention: the published rule accumulates q = Gr, which is right for alpha > 0. A flip
// lowers the loss to first order iff dL = -2 alpha b Gr < 0, i.e. iff sign(alpha) * Gr * b > 0,
// so we accumulate q = sign(alpha_k[i,g]) * Gr_ij: the published rule wherever alpha > 0, the
// same descent direction where a scale is negative, and no signal where alpha = 0 (a flip there
// changes nothing). On the first step m = eta * q, so every flip has dL < 0; later flips follow
// the accumulated evidence and may go against a single step's dL, as in BOLD.
//
// The accumulator is the policy's only per-weight state, stored as Storage per trainable bit:
// float (4 bytes), multibool::half (2 bytes, round to nearest even) or std::int8_t with one float
// scale per (kernel, row) (1 + 4 / cols bytes, saturating at |m| = 1, see below). Each step decodes a row to float,
// updates it and decides its flips in float, then stores it back, so storage rounding only touches the carry.
//
// State (write_state / read_state): u64 kernels, u64 rows, u64 cols, u32 trainable-kernel mask
// (bit k: kernel k trains), u32 bytes per stored value (4 float, 2 half, 1 int8), f64 beta, then
// u64 count + the accumulator values (f32, f16 bits or i8); for int8 also u64 count + f32 row
// scales. The options (eta) are not state: the reader's own apply.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "multibool/backends/int8_activations.hpp"
#include "multibool/core/binary_io.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/training/flip_optimizer.hpp"

namespace multibool {

struct BoldOptions {
    // In units of 1 / gradient: a bit flips once eta times its accumulated gradient reaches 1, so
    // eta scales with how the loss is normalized. 5e-3 is the published LLM recipe's; a loss that is
    // a mean over a batch's tokens (the LLaMA example's) needs about eta x tokens per batch there
    // (its default 2 for 2048 tokens, examples/README.md).
    double eta = 5e-3;
    TrainableKernels trainable = TrainableKernels::last();
};

namespace detail {

// Accumulator rows (one per trainable kernel and matrix row) of cols values each, decoded to and
// encoded from float a row at a time. float and half: one value per weight.
template <class Storage>
class BoldAccumulator {
public:
    BoldAccumulator(std::size_t rows, std::size_t cols) : cols_(cols), values_(rows * cols, Storage(0.0f)) {}

    // The row as floats to update: float storage hands out the stored row itself, half decodes
    // it into `scratch` (cols floats), and close() encodes it back.
    std::span<float> open(std::size_t row, std::span<float> scratch) noexcept {
        if constexpr (std::is_same_v<Storage, float>) {
            return std::span<float>(values_).subspan(row * cols_, cols_);
        } else {
            widen(std::span<const Storage>(values_).subspan(row * cols_, cols_), scratch);
            return scratch;
        }
    }
    void close(std::size_t row, std::span<const float> opened) noexcept {
        if constexpr (!std::is_same_v<Storage, float>)
            narrow(opened, std::span<Storage>(values_).subspan(row * cols_, cols_));
    }
    [[nodiscard]] float value(std::size_t row, std::size_t j) const noexcept {
        return static_cast<float>(values_[row * cols_ + j]);
    }
    [[nodiscard]] std::size_t bytes() const noexcept { return values_.size() * sizeof(Storage); }

    void write(BinaryWriter& writer) const { writer.write_counted(std::span<const Storage>(values_)); }
    // Validated: no NaN. Infinity is allowed: keep evidence beyond half's range rounds to it.
    static BoldAccumulator read(BinaryReader& reader, std::size_t rows, std::size_t cols) {
        const std::size_t count = rows * cols;
        auto values = reader.read_counted<Storage>(count, "BoldPolicy accumulator");
        for (std::size_t e = 0; e < count; ++e) {
            if (std::isnan(static_cast<float>(values[e]))) {
                throw FormatError(reader.source(), "BoldPolicy accumulator", "numbers",
                                  "NaN at element " + std::to_string(e));
            }
        }
        return BoldAccumulator(cols, std::move(values));
    }

private:
    BoldAccumulator(std::size_t cols, std::vector<Storage> values) : cols_(cols), values_(std::move(values)) {}

    std::size_t cols_;
    std::vector<Storage> values_;
};

// int8 with one float scale per row: scale = min(1, max |m| over the row) / 127, q = m / scale
// rounded to nearest (ties to even) and clamped to [-127, 127]. Every stored value has m * b < 1
// (else it flipped and was reset), so the saturation at |m| = 1 only caps how much "keep" evidence
// (m * b < -1) a bit remembers; it buys resolution near the threshold, where the per-row absmax
// alone lost it to the unbounded keep side (flip agreement with float rose from ~73 % to ~91 %).
template <>
class BoldAccumulator<std::int8_t> {
public:
    BoldAccumulator(std::size_t rows, std::size_t cols) : cols_(cols), values_(rows * cols, 0), scales_(rows, 0.0f) {}

    std::span<float> open(std::size_t row, std::span<float> scratch) const noexcept {
        for (std::size_t j = 0; j < cols_; ++j) scratch[j] = value(row, j);
        return scratch;
    }
    void close(std::size_t row, std::span<const float> in) noexcept {
        float largest = 0;
        for (const float v : in) largest = std::max(largest, std::fabs(v));
        const float scale = std::min(largest, 1.0f) / float(int8_max_level);
        scales_[row] = scale;
        for (std::size_t j = 0; j < cols_; ++j) {
            const float q =
                scale == 0 ? 0.0f
                           : std::clamp(std::nearbyint(in[j] / scale), -float(int8_max_level), float(int8_max_level));
            values_[row * cols_ + j] = static_cast<std::int8_t>(q);
        }
    }
    [[nodiscard]] float value(std::size_t row, std::size_t j) const noexcept {
        return scales_[row] * float(values_[row * cols_ + j]);
    }
    [[nodiscard]] std::size_t bytes() const noexcept {
        return values_.size() * sizeof(std::int8_t) + scales_.size() * sizeof(float);
    }

    void write(BinaryWriter& writer) const {
        writer.write_counted(std::span<const std::int8_t>(values_));
        writer.write_counted(std::span<const float>(scales_));
    }
    // Validated as store() writes them: values in [-127, 127], scales in [0, 1/127].
    static BoldAccumulator read(BinaryReader& reader, std::size_t rows, std::size_t cols) {
        const std::size_t count = rows * cols;
        auto values = reader.read_counted<std::int8_t>(count, "BoldPolicy accumulator");
        auto scales = reader.read_counted<float>(rows, "BoldPolicy accumulator row scale");
        for (std::size_t e = 0; e < count; ++e) {
            if (values[e] < -int8_max_level) {
                throw FormatError(reader.source(), "BoldPolicy accumulator", "values in [-127, 127]",
                                  std::to_string(values[e]) + " at element " + std::to_string(e));
            }
        }
        for (std::size_t row = 0; row < rows; ++row) {
            if (!(scales[row] >= 0 && scales[row] <= 1.0f / float(int8_max_level))) {
                throw FormatError(reader.source(), "BoldPolicy accumulator row scales", "values in [0, 1/127]",
                                  std::to_string(scales[row]) + " at row " + std::to_string(row));
            }
        }
        return BoldAccumulator(cols, std::move(values), std::move(scales));
    }

private:
    BoldAccumulator(std::size_t cols, std::vector<std::int8_t> values, std::vector<float> scales)
        : cols_(cols), values_(std::move(values)), scales_(std::move(scales)) {}

    std::size_t cols_;
    std::vector<std::int8_t> values_;
    std::vector<float> scales_;
};

}  // namespace detail

template <class Storage = float>
class BoldPolicy {
    static_assert(std::is_same_v<Storage, float> || std::is_same_v<Storage, half> ||
                      std::is_same_v<Storage, std::int8_t>,
                  "BoldPolicy: the accumulator is stored as float, multibool::half or std::int8_t (per-row scale)");

public:
    // An accumulator for the trainable kernels of a kernels x rows x cols matrix, all zero.
    BoldPolicy(std::size_t kernels, std::size_t rows, std::size_t cols, BoldOptions options = {})
        : options_(options),
          kernels_(kernels),
          rows_(rows),
          cols_(cols),
          accumulator_(options.trainable.count(kernels) * rows, cols) {
        if (kernels < 1 || kernels > TrainableKernels::max_kernels || !(options.eta >= 0) ||
            !std::isfinite(options.eta)) {
            throw std::invalid_argument("BoldPolicy: need 1 to 8 kernels and a finite eta >= 0");
        }
        std::size_t next = 0;
        for (std::size_t k = 0; k < kernels; ++k) slot_[k] = options.trainable.contains(k, kernels) ? next++ : none;
    }
    template <BitPlaneStorage M>
    explicit BoldPolicy(const M& m, BoldOptions options = {}) : BoldPolicy(M::kernels, m.rows(), m.cols(), options) {}

    void begin_step(FlipContext) noexcept {}

    // A new eta from the next apply() on (a schedule's value); the accumulator is kept.
    void set_eta(double eta) {
        if (!(eta >= 0) || !std::isfinite(eta)) {
            throw std::invalid_argument("BoldPolicy::set_eta: need a finite eta >= 0, found " + std::to_string(eta));
        }
        options_.eta = eta;
    }

    // Touches only rows [first_row, first_row + tile.rows()) of m and of the accumulator: safe to
    // call concurrently for disjoint row ranges.
    template <BitPlaneStorage M>
    FlipStatistics apply(M& m, std::size_t first_row, MatrixView<const float> gradient_tile) {
        check_gradient_tile(m, first_row, gradient_tile, "BoldPolicy::apply");
        if (M::kernels != kernels_ || m.rows() != rows_ || m.cols() != cols_) {
            throw std::invalid_argument(
                "BoldPolicy::apply: the accumulator was made for K=" + std::to_string(kernels_) + " " +
                std::to_string(rows_) + "x" + std::to_string(cols_) + ", got K=" + std::to_string(M::kernels) + " " +
                std::to_string(m.rows()) + "x" + std::to_string(m.cols()));
        }
        const auto beta = static_cast<float>(beta_);
        const auto eta = static_cast<float>(options_.eta);
        FlipStatistics stats;
        std::vector<float> scratch(std::is_same_v<Storage, float> ? 0 : cols_);
        for (std::size_t r = 0; r < gradient_tile.rows(); ++r) {
            const std::size_t i = first_row + r;
            const auto gradient = gradient_tile.row(r);
            for (std::size_t k = 0; k < kernels_; ++k) {
                if (slot_[k] == none) continue;
                const std::size_t row = slot_[k] * rows_ + i;
                const std::span<float> values = accumulator_.open(row, scratch);
                // beta = 0 forgets the evidence; 0 * inf (a saturated value, or one read from a
                // state) would be NaN, which no state may hold.
                if (beta == 0) std::fill(values.begin(), values.end(), 0.0f);
                const auto plane = m.plane_row(k, i);
                const auto alphas = m.scales(k, i);
                std::size_t candidates = 0;
                ExactSum candidate_gain;  // a local: its carry chain stays in registers
                for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                    const auto alpha = static_cast<float>(alphas[g]);
                    const float direction = alpha > 0 ? 1.0f : (alpha < 0 ? -1.0f : 0.0f);
                    const std::size_t begin = m.group_begin(g), end = m.group_end(g);
                    // The evidence update needs no bits: a loop the compiler vectorizes, which
                    // also tells whether any bit of the group can flip (|v| >= 1).
                    unsigned reached = 0;
                    for (std::size_t j = begin; j < end; ++j) {
                        float& v = values[j];
                        v = beta * v + eta * (direction * gradient[j]);
                        reached |= unsigned{std::fabs(v) >= 1.0f};
                    }
                    for (std::size_t j = begin; j < end; j += 64) {
                        const std::uint64_t bits = bits_at(plane, j);
                        const std::size_t count = std::min<std::size_t>(64, end - j);
                        std::array<float, 64> gains;
                        flip_gains(alpha, bits, gradient.data() + j, count, gains.data(), candidates, candidate_gain);
                        if (reached == 0) continue;
                        for (std::size_t b = 0; b < count; ++b) {
                            float& v = values[j + b];
                            if (((bits >> b) & 1u ? v : -v) >= 1.0f) {
                                m.flip(k, i, j + b);
                                v = 0;
                                ++stats.kernel_flips[k];
                                stats.flip_gain.add(std::fabs(gains[b]));  // |dL|
                            }
                        }
                    }
                }
                accumulator_.close(row, values);
                stats.kernel_candidates[k] += candidates;
                stats.candidate_gain += candidate_gain;
                stats.kernel_bits[k] += cols_;
            }
        }
        return stats;
    }

    // beta for the next step: the fraction of trainable bits this step left unflipped.
    void end_step(const FlipStatistics& total) noexcept {
        if (total.bits() != 0) beta_ = 1.0 - double(total.flips()) / double(total.bits());
    }

    // Accumulator bytes (row scales included) over the matrix's rows * cols weights: 4, 2 or
    // 1 + 4 / cols per trainable kernel.
    [[nodiscard]] double state_bytes_per_weight() const noexcept {
        return rows_ * cols_ == 0 ? 0.0 : double(accumulator_.bytes()) / double(rows_ * cols_);
    }
    // Everything a later step depends on besides the options (format: top of this header).
    void write_state(BinaryWriter& writer) const {
        writer.write(std::uint64_t{kernels_});
        writer.write(std::uint64_t{rows_});
        writer.write(std::uint64_t{cols_});
        writer.write(trainable_mask());
        writer.write(std::uint32_t{sizeof(Storage)});
        writer.write(beta_);
        accumulator_.write(writer);
    }
    // Refuses (FormatError) a state for another shape, trainable set or storage, a beta outside
    // [0, 1] or invalid accumulator values, before changing anything.
    void read_state(BinaryReader& reader) {
        reader.expect("BoldPolicy kernels", reader.read<std::uint64_t>("BoldPolicy kernels"), std::uint64_t{kernels_});
        reader.expect("BoldPolicy rows", reader.read<std::uint64_t>("BoldPolicy rows"), std::uint64_t{rows_});
        reader.expect("BoldPolicy cols", reader.read<std::uint64_t>("BoldPolicy cols"), std::uint64_t{cols_});
        reader.expect("BoldPolicy trainable kernels", reader.read<std::uint32_t>("BoldPolicy trainable kernels"),
                      trainable_mask());
        reader.expect("BoldPolicy accumulator storage bytes",
                      reader.read<std::uint32_t>("BoldPolicy accumulator storage bytes"),
                      std::uint32_t{sizeof(Storage)});
        const auto beta = reader.read<double>("BoldPolicy beta");
        if (!(beta >= 0 && beta <= 1)) {
            throw FormatError(reader.source(), "BoldPolicy beta", "a value in [0, 1]", std::to_string(beta));
        }
        auto accumulator = detail::BoldAccumulator<Storage>::read(reader, accumulator_rows(), cols_);
        accumulator_ = std::move(accumulator);
        beta_ = beta;
    }

    [[nodiscard]] double beta() const noexcept { return beta_; }
    // The stored accumulator of bit (k, i, j), decoded; 0 for kernels that do not train.
    [[nodiscard]] float accumulator(std::size_t k, std::size_t i, std::size_t j) const noexcept {
        return k < kernels_ && slot_[k] != none ? accumulator_.value(slot_[k] * rows_ + i, j) : 0.0f;
    }
    [[nodiscard]] const BoldOptions& options() const noexcept { return options_; }

private:
    static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

    // Bit k set: kernel k trains (the resolved set, so last() and only(K - 1) write the same).
    [[nodiscard]] std::uint32_t trainable_mask() const noexcept {
        std::uint32_t mask = 0;
        for (std::size_t k = 0; k < kernels_; ++k) mask |= slot_[k] != none ? std::uint32_t{1} << k : 0u;
        return mask;
    }
    [[nodiscard]] std::size_t accumulator_rows() const noexcept {
        std::size_t trainable = 0;
        for (std::size_t k = 0; k < kernels_; ++k) trainable += std::size_t{slot_[k] != none};
        return trainable * rows_;
    }

    BoldOptions options_;
    std::size_t kernels_;
    std::size_t rows_;
    std::size_t cols_;
    std::array<std::size_t, TrainableKernels::max_kernels> slot_{};  // accumulator block of kernel k, or none
    detail::BoldAccumulator<Storage> accumulator_;
    double beta_ = 0.0;  // beta_1 = 0
};

}  // namespace multibool
