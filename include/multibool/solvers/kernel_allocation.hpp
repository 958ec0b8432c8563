#pragma once
// Kernels per layer under a bit budget (docs/METHOD.md §5b): choose K_l for every layer to minimise
// sum_l error_l(K_l) subject to sum_l cost_bits_l(K_l) <= budget * sum_l weights_l.
// Two solvers: the published greedy (add one kernel at a time where the error drop per added bit
// is largest) and an exact multiple-choice knapsack over the costs divided by their greatest
// common divisor; real models keep that table small, since all layers of one shape share costs.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace multibool {

// What each kernel count costs and gains in one layer; index K - 1 holds K kernels.
struct LayerKernelOptions {
    std::size_t weights = 0;               // the layer's weight count, for the bits-per-weight budget
    std::vector<std::uint64_t> cost_bits;  // honest storage bits at K kernels, scales counted
    std::vector<double> error;             // error at K kernels, already size/importance weighted
};

enum class AllocationSolver {
    automatic,  // exact when its table has at most exact_allocation_max_cells cells, else greedy
    exact,
    greedy,
};

// The exact solver's table (layers x budget units) holds one byte per cell.
inline constexpr std::size_t exact_allocation_max_cells = 50'000'000;

struct KernelAllocation {
    std::vector<std::size_t> kernels;  // K_l per layer, from 1
    std::uint64_t cost_bits = 0;
    double error = 0.0;
    double bits_per_weight = 0.0;
    AllocationSolver solver = AllocationSolver::exact;  // the one that ran: exact or greedy
};

namespace detail {

inline void check_layer_options(std::span<const LayerKernelOptions> layers) {
    if (layers.empty()) throw std::invalid_argument("allocate_kernels: no layers to allocate kernels to");
    for (std::size_t l = 0; l < layers.size(); ++l) {
        const auto& layer = layers[l];
        const std::string where = "allocate_kernels: layer " + std::to_string(l);
        if (layer.weights == 0) throw std::invalid_argument(where + " has no weights");
        if (layer.cost_bits.empty() || layer.cost_bits.size() != layer.error.size()) {
            throw std::invalid_argument(where + " has " + std::to_string(layer.cost_bits.size()) + " costs and " +
                                        std::to_string(layer.error.size()) +
                                        " errors, expected the same number (at least 1)");
        }
        if (layer.cost_bits.size() > std::numeric_limits<std::uint8_t>::max()) {
            throw std::invalid_argument(where + " has " + std::to_string(layer.cost_bits.size()) +
                                        " options, at most 255 are supported");
        }
        for (std::size_t k = 0; k < layer.error.size(); ++k) {
            if (!std::isfinite(layer.error[k])) {
                throw std::invalid_argument(where + " error at K=" + std::to_string(k + 1) + " is " +
                                            std::to_string(layer.error[k]) + ", not a finite number");
            }
            if (k > 0 && layer.cost_bits[k] <= layer.cost_bits[k - 1]) {
                throw std::invalid_argument(where + " costs " + std::to_string(layer.cost_bits[k]) +
                                            " bits at K=" + std::to_string(k + 1) + ", not more than " +
                                            std::to_string(layer.cost_bits[k - 1]) + " at K=" + std::to_string(k));
            }
        }
    }
}

// Every layer starts at K = 1; repeatedly take the one extra kernel, among those the budget still
// allows, with the largest error drop per added bit; stop when none lowers the error.
inline std::vector<std::size_t> greedy_kernel_choice(std::span<const LayerKernelOptions> layers,
                                                     std::uint64_t capacity_bits, std::uint64_t spent_bits) {
    std::vector<std::size_t> choice(layers.size(), 0);
    for (;;) {
        std::size_t best = layers.size();
        double best_drop_per_bit = 0.0;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const std::size_t k = choice[l];
            if (k + 1 == layers[l].cost_bits.size()) continue;
            const std::uint64_t added = layers[l].cost_bits[k + 1] - layers[l].cost_bits[k];
            const double drop = layers[l].error[k] - layers[l].error[k + 1];
            if (added > capacity_bits - spent_bits || drop <= 0.0) continue;
            if (drop / double(added) > best_drop_per_bit) {
                best_drop_per_bit = drop / double(added);
                best = l;
            }
        }
        if (best == layers.size()) return choice;
        spent_bits += layers[best].cost_bits[choice[best] + 1] - layers[best].cost_bits[choice[best]];
        ++choice[best];
    }
}

// Multiple-choice knapsack by dynamic programming: least_error[c] is the least error of the
// layers so far using at most c units of extra cost over K = 1 everywhere.
inline std::vector<std::size_t> exact_kernel_choice(std::span<const LayerKernelOptions> layers, std::uint64_t unit,
                                                    std::size_t capacity_units) {
    const std::size_t width = capacity_units + 1;
    std::vector<double> least_error(width, 0.0), next(width);
    std::vector<std::uint8_t> taken(layers.size() * width);
    for (std::size_t l = 0; l < layers.size(); ++l) {
        const auto& layer = layers[l];
        for (std::size_t c = 0; c < width; ++c) {
            next[c] = std::numeric_limits<double>::infinity();
            for (std::size_t k = 0; k < layer.cost_bits.size(); ++k) {
                const std::uint64_t units = (layer.cost_bits[k] - layer.cost_bits[0]) / unit;
                if (units > c) break;  // costs increase with K
                const double error = least_error[c - units] + layer.error[k];
                if (error < next[c]) {
                    next[c] = error;
                    taken[l * width + c] = static_cast<std::uint8_t>(k);
                }
            }
        }
        least_error.swap(next);
    }
    std::vector<std::size_t> choice(layers.size());
    std::size_t c = capacity_units;
    for (std::size_t l = layers.size(); l-- > 0;) {
        choice[l] = taken[l * width + c];
        c -= static_cast<std::size_t>((layers[l].cost_bits[choice[l]] - layers[l].cost_bits[0]) / unit);
    }
    return choice;
}

}  // namespace detail

// Chooses K per layer so that the average storage stays within budget_bits_per_weight (over
// the weights of all layers). Throws std::invalid_argument when even K = 1 everywhere exceeds
// the budget, and std::length_error when the exact solver is required but its table is too big.
inline KernelAllocation allocate_kernels(std::span<const LayerKernelOptions> layers, double budget_bits_per_weight,
                                         AllocationSolver solver = AllocationSolver::automatic) {
    detail::check_layer_options(layers);
    if (!std::isfinite(budget_bits_per_weight)) {
        throw std::invalid_argument("allocate_kernels: budget of " + std::to_string(budget_bits_per_weight) +
                                    " bits per weight is not a finite number");
    }
    std::uint64_t total_weights = 0;
    std::uint64_t minimum_bits = 0;
    for (const auto& layer : layers) {
        total_weights += layer.weights;
        minimum_bits += layer.cost_bits.front();
    }
    // Costs are whole bits, so a cost fits the budget exactly when it fits its floor.
    const double allowed_bits = std::floor(budget_bits_per_weight * double(total_weights));
    const std::uint64_t capacity_bits = allowed_bits >= 0x1p64 ? std::numeric_limits<std::uint64_t>::max()
                                        : allowed_bits <= 0.0  ? 0
                                                               : static_cast<std::uint64_t>(allowed_bits);
    if (minimum_bits > capacity_bits) {
        throw std::invalid_argument("allocate_kernels: a budget of " + std::to_string(budget_bits_per_weight) +
                                    " bits per weight is below " +
                                    std::to_string(double(minimum_bits) / double(total_weights)) +
                                    ", the least any allocation achieves (every layer at K=1)");
    }

    // One budget unit: the greatest common divisor of every extra cost over K = 1.
    std::uint64_t unit = 0;
    std::uint64_t most_extra_bits = 0;
    for (const auto& layer : layers) {
        for (const std::uint64_t cost : layer.cost_bits) unit = std::gcd(unit, cost - layer.cost_bits.front());
        most_extra_bits += layer.cost_bits.back() - layer.cost_bits.front();
    }
    unit = std::max<std::uint64_t>(unit, 1);
    // Beyond every layer at its largest K, more budget changes nothing.
    const std::uint64_t capacity_units = std::min(capacity_bits - minimum_bits, most_extra_bits) / unit;
    const bool exact_fits = capacity_units < exact_allocation_max_cells &&
                            (capacity_units + 1) * layers.size() <= exact_allocation_max_cells;
    if (solver == AllocationSolver::exact && !exact_fits) {
        throw std::length_error("allocate_kernels: the exact solver needs " + std::to_string(layers.size()) + " x " +
                                std::to_string(capacity_units + 1) + " table cells, more than " +
                                std::to_string(exact_allocation_max_cells));
    }
    if (solver == AllocationSolver::automatic) solver = exact_fits ? AllocationSolver::exact : AllocationSolver::greedy;

    const auto choice = solver == AllocationSolver::exact
                            ? detail::exact_kernel_choice(layers, unit, static_cast<std::size_t>(capacity_units))
                            : detail::greedy_kernel_choice(layers, capacity_bits, minimum_bits);
    KernelAllocation allocation;
    allocation.solver = solver;
    for (std::size_t l = 0; l < layers.size(); ++l) {
        allocation.kernels.push_back(choice[l] + 1);
        allocation.cost_bits += layers[l].cost_bits[choice[l]];
        allocation.error += layers[l].error[choice[l]];
    }
    allocation.bits_per_weight = double(allocation.cost_bits) / double(total_weights);
    return allocation;
}

}  // namespace multibool
