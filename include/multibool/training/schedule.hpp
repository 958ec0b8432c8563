#pragma once
// A multiplier of a rate over the planned steps of a run: an optional linear warm-up, then
// constant, linear or cosine decay to zero (SGDR's cosine without restarts, Loshchilov & Hutter,
// ICLR 2017). A run multiplies its learning rates and its flip policy's eta by it each step, so
// the value depends only on the step number and the run's planned length: a run resumed from a
// checkpoint follows the same values.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <optional>
#include <string_view>

namespace multibool {

// Stored as codes in checkpoints: the values never change.
enum class ScheduleShape : std::uint32_t { constant = 0, linear = 1, cosine = 2 };

inline const char* schedule_shape_name(ScheduleShape s) noexcept {
    switch (s) {
        case ScheduleShape::linear:
            return "linear";
        case ScheduleShape::cosine:
            return "cosine";
        default:
            return "constant";
    }
}

inline std::optional<ScheduleShape> parse_schedule_shape(std::string_view name) noexcept {
    if (name == "constant") return ScheduleShape::constant;
    if (name == "linear") return ScheduleShape::linear;
    if (name == "cosine") return ScheduleShape::cosine;
    return std::nullopt;
}

struct Schedule {
    ScheduleShape shape = ScheduleShape::constant;
    std::size_t warmup = 0;  // steps rising linearly to 1: step s < warmup gets (s + 1) / warmup

    // The multiplier of step `step` (0-based) of a run of `planned` steps. After the warm-up the
    // decay runs over the remaining steps and would reach 0 at step `planned`, which is never
    // taken, so the last step still moves a little. Steps past the plan get 0 from a decay.
    [[nodiscard]] double factor(std::size_t step, std::size_t planned) const noexcept {
        if (step < warmup) return double(step + 1) / double(warmup);
        if (shape == ScheduleShape::constant) return 1.0;
        if (step >= planned) return 0.0;
        const double progress = double(step - warmup) / double(planned - warmup);
        return shape == ScheduleShape::linear ? 1.0 - progress : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }

    friend bool operator==(const Schedule&, const Schedule&) = default;
};

}  // namespace multibool
