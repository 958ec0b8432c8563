#pragma once
// ScaleAdamW: the published recipe's gradient step on the scales (docs/METHOD.md §5), AdamW (Loshchilov &
// Hutter) with bias correction and decoupled weight decay, on dL/dalpha from ScaleGradient. Its
// state is two float moments per scale, K * rows * groups_per_row of them, far fewer than weights.
// The per-element update is adamw.hpp's, shared with the generic AdamW.
//
// State (write_state / read_state): u64 kernels, u64 rows, u64 groups_per_row, then adamw.hpp's
// moments block (u64 steps, u64 count + f32 first moments, u64 count + f32 second moments).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/training/adamw.hpp"
#include "multibool/training/scale_gradient.hpp"

namespace multibool {

template <std::size_t K>
class ScaleAdamW {
public:
    static constexpr std::size_t kernels = K;

    // Zero moments for a matrix of `rows` rows and `groups_per_row` scale groups per row.
    ScaleAdamW(std::size_t rows, std::size_t groups_per_row, AdamWOptions options)
        : options_(options),
          rows_(rows),
          groups_(groups_per_row),
          moments_(detail::per_scale_count("ScaleAdamW", K, rows, groups_per_row)) {
        detail::check_adamw_options(options, "ScaleAdamW");
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
        detail::check_finite_gradient("ScaleAdamW::step", values, [&](std::size_t e) { return describe(e); });
        const detail::AdamWStep update = moments_.next_step(options_);
        // Every new scale is formed and checked first, then everything is stored.
        std::vector<Scale> updated(values.size());
        for (std::size_t e = 0; e < values.size(); ++e) {
            const detail::ScaleIndex at = detail::scale_index(e, rows_, groups_);
            const double alpha = static_cast<double>(m.scales(at.kernel, at.row)[at.group]);
            updated[e] = static_cast<Scale>(update(moments_.first[e], moments_.second[e], alpha, values[e]).value);
            if (!std::isfinite(static_cast<double>(updated[e]))) {
                throw std::invalid_argument("ScaleAdamW::step: the new value of " + describe(e) +
                                            " does not fit the scale type");
            }
        }
        for (std::size_t e = 0; e < values.size(); ++e) {
            const detail::ScaleIndex at = detail::scale_index(e, rows_, groups_);
            m.set_scale(at.kernel, at.row, at.group, updated[e]);
        }
        moments_.advance(update, values);
    }

    // Everything a later step depends on besides the options (format: top of this header).
    void write_state(BinaryWriter& writer) const {
        writer.write(std::uint64_t{K});
        writer.write(std::uint64_t{rows_});
        writer.write(std::uint64_t{groups_});
        moments_.write(writer);
    }
    // Refuses (FormatError) a state for another K, rows or groups per row, non-finite moments or a
    // bad step count, before changing anything.
    void read_state(BinaryReader& reader) {
        reader.expect("ScaleAdamW kernels", reader.read<std::uint64_t>("ScaleAdamW kernels"), std::uint64_t{K});
        reader.expect("ScaleAdamW rows", reader.read<std::uint64_t>("ScaleAdamW rows"), std::uint64_t{rows_});
        reader.expect("ScaleAdamW groups_per_row", reader.read<std::uint64_t>("ScaleAdamW groups_per_row"),
                      std::uint64_t{groups_});
        moments_ = detail::read_adamw_moments(reader, "ScaleAdamW", moments_.first.size());
    }

    // The moments' bytes: 8 per scale.
    [[nodiscard]] std::size_t state_bytes() const noexcept { return moments_.bytes(); }
    [[nodiscard]] std::size_t steps() const noexcept { return moments_.steps; }
    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t groups_per_row() const noexcept { return groups_; }
    [[nodiscard]] const AdamWOptions& options() const noexcept { return options_; }
    // A new learning rate from the next step on (a schedule's value); the moments are kept.
    void set_learning_rate(float learning_rate) {
        AdamWOptions changed = options_;
        changed.learning_rate = learning_rate;
        detail::check_adamw_options(changed, "ScaleAdamW::set_learning_rate");
        options_ = changed;
    }

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
        const detail::ScaleIndex at = detail::scale_index(e, rows_, groups_);
        return "scale (kernel " + std::to_string(at.kernel) + ", row " + std::to_string(at.row) + ", group " +
               std::to_string(at.group) + ")";
    }

    AdamWOptions options_;
    std::size_t rows_;
    std::size_t groups_;
    detail::AdamWMoments moments_;
};

template <BitPlaneStorage M>
ScaleAdamW(const M&, AdamWOptions) -> ScaleAdamW<M::kernels>;

}  // namespace multibool
