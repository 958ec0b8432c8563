#pragma once
// How much persistent optimizer state training in the Boolean domain holds per weight (bits and
// scales excluded), next to latent-weight training, which keeps a float32 shadow weight and its
// two Adam moments: the memory argument of docs/METHOD.md §5 as numbers.
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string>

namespace multibool {

struct OptimizerStateReport {
    double flip_state_bytes_per_weight = 0.0;   // the flip policy's (e.g. BOLD's accumulator)
    double scale_state_bytes_per_weight = 0.0;  // the scale step's (AdamW moments; 0 in closed form)
    double total_bytes_per_weight = 0.0;
    static constexpr double latent_weight_bytes_per_weight = 12.0;  // float32 latent + two Adam moments

    // total / latent: the fraction of latent-weight training's optimizer memory.
    [[nodiscard]] double fraction_of_latent() const noexcept {
        return total_bytes_per_weight / latent_weight_bytes_per_weight;
    }
};

// From a flip policy (its state_bytes_per_weight()), the scale step's state in bytes
// (ScaleAdamW::state_bytes(), or 0 for a closed-form refresh) and the layer's rows * cols.
template <class Policy>
    requires requires(const Policy& policy) {
        { policy.state_bytes_per_weight() } -> std::convertible_to<double>;
    }
OptimizerStateReport optimizer_state(const Policy& policy, std::size_t scale_state_bytes, std::size_t weights) {
    OptimizerStateReport report;
    report.flip_state_bytes_per_weight = static_cast<double>(policy.state_bytes_per_weight());
    report.scale_state_bytes_per_weight = weights == 0 ? 0.0 : double(scale_state_bytes) / double(weights);
    report.total_bytes_per_weight = report.flip_state_bytes_per_weight + report.scale_state_bytes_per_weight;
    return report;
}

struct NamedOptimizerState {
    std::string name;
    OptimizerStateReport report;
};

// A fixed-width text table, one line per entry, bytes per weight with two decimals.
inline std::string optimizer_state_table(std::span<const NamedOptimizerState> entries) {
    char line[160];
    std::snprintf(line, sizeof line, "%-36s %9s %10s %10s %11s\n", "optimizer", "flip B/w", "scale B/w", "total B/w",
                  "latent B/w");
    std::string table = line;
    for (const auto& [name, report] : entries) {
        std::snprintf(line, sizeof line, "%-36.36s %9.2f %10.2f %10.2f %11.2f\n", name.c_str(),
                      report.flip_state_bytes_per_weight, report.scale_state_bytes_per_weight,
                      report.total_bytes_per_weight, OptimizerStateReport::latent_weight_bytes_per_weight);
        table += line;
    }
    return table;
}

}  // namespace multibool
