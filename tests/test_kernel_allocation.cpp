#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <multibool/solvers/kernel_allocation.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

// Honest storage of an m x n layer at K kernels with fp16 scales per group of G: K * (m*n + 16 * m * n / G).
LayerKernelOptions group_scaled_layer(std::size_t rows, std::size_t cols, std::size_t group, std::size_t max_k,
                                      std::mt19937_64& rng) {
    LayerKernelOptions layer;
    layer.weights = rows * cols;
    std::uniform_real_distribution<double> keep(0.2, 0.7);
    double error = double(layer.weights);
    for (std::size_t k = 1; k <= max_k; ++k) {
        layer.cost_bits.push_back(k * (rows * cols + 16 * rows * ((cols + group - 1) / group)));
        layer.error.push_back(error);
        error *= keep(rng);
    }
    return layer;
}

// Small random instances: arbitrary increasing costs (sometimes sharing a common unit) and
// error curves that may rise, fall or zigzag with K.
std::vector<LayerKernelOptions> random_instance(std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> layer_count(1, 6), option_count(1, 4), weights(16, 512), step(1, 300),
        unit_pick(0, 2);
    std::uniform_real_distribution<double> error(0.0, 100.0);
    const std::size_t unit = std::vector<std::size_t>{1, 8, 96}[unit_pick(rng)];
    std::vector<LayerKernelOptions> layers(layer_count(rng));
    for (auto& layer : layers) {
        layer.weights = weights(rng);
        std::uint64_t cost = layer.weights * unit / 8 + step(rng) * unit;
        for (std::size_t k = option_count(rng); k > 0; --k) {
            layer.cost_bits.push_back(cost);
            layer.error.push_back(error(rng));
            cost += step(rng) * unit;
        }
    }
    return layers;
}

double total_weights_of(const std::vector<LayerKernelOptions>& layers) {
    double total = 0.0;
    for (const auto& layer : layers) total += double(layer.weights);
    return total;
}

// The least error over every assignment of K per layer that meets the budget as allocate_kernels
// states it: cost <= budget * total weights.
double brute_force_least_error(const std::vector<LayerKernelOptions>& layers, double budget) {
    const double total_weights = total_weights_of(layers);
    double least_error = std::numeric_limits<double>::infinity();
    std::vector<std::size_t> choice(layers.size(), 0);
    for (;;) {
        std::uint64_t cost = 0;
        double error = 0.0;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            cost += layers[l].cost_bits[choice[l]];
            error += layers[l].error[choice[l]];
        }
        if (double(cost) <= budget * total_weights) least_error = std::min(least_error, error);
        std::size_t l = 0;
        while (l < layers.size() && ++choice[l] == layers[l].cost_bits.size()) choice[l++] = 0;
        if (l == layers.size()) return least_error;
    }
}

// The allocation is self-consistent and meets the budget.
void check_allocation(const KernelAllocation& a, const std::vector<LayerKernelOptions>& layers, double budget) {
    REQUIRE(a.kernels.size() == layers.size());
    std::uint64_t cost = 0;
    double error = 0.0;
    for (std::size_t l = 0; l < layers.size(); ++l) {
        REQUIRE(a.kernels[l] >= 1);
        REQUIRE(a.kernels[l] <= layers[l].cost_bits.size());
        cost += layers[l].cost_bits[a.kernels[l] - 1];
        error += layers[l].error[a.kernels[l] - 1];
    }
    REQUIRE(a.cost_bits == cost);
    REQUIRE(a.error == Approx(error).epsilon(1e-12));
    REQUIRE(double(cost) <= budget * total_weights_of(layers));
    REQUIRE(a.bits_per_weight == Approx(double(cost) / total_weights_of(layers)));
    REQUIRE(a.bits_per_weight <= budget);
}

}  // namespace

TEST_CASE("kernel allocation: the exact solver equals brute force, the greedy meets the budget", "[allocation]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (int instance = 0; instance < 3000; ++instance) {
        const auto layers = random_instance(rng);
        double least_cost = 0.0, most_cost = 0.0;
        for (const auto& layer : layers) {
            least_cost += double(layer.cost_bits.front());
            most_cost += double(layer.cost_bits.back());
        }
        const double weights = total_weights_of(layers);
        // From the cheapest allocation (one ulp above, so that rounding cannot put it out of reach)
        // to a little beyond the dearest.
        const double budget = instance % 10 == 0
                                  ? std::nextafter(least_cost / weights, 1e300)
                                  : std::uniform_real_distribution<double>(least_cost, most_cost * 1.05)(rng) / weights;
        CAPTURE(instance, budget, layers.size());
        const double least_error = brute_force_least_error(layers, budget);
        REQUIRE(std::isfinite(least_error));

        const auto exact = allocate_kernels(layers, budget);
        REQUIRE(exact.solver == AllocationSolver::exact);
        check_allocation(exact, layers, budget);
        REQUIRE(exact.error == Approx(least_error).epsilon(1e-12).margin(1e-9));
        REQUIRE(allocate_kernels(layers, budget, AllocationSolver::exact).kernels == exact.kernels);

        const auto greedy = allocate_kernels(layers, budget, AllocationSolver::greedy);
        REQUIRE(greedy.solver == AllocationSolver::greedy);
        check_allocation(greedy, layers, budget);
        REQUIRE(greedy.error >= least_error - 1e-9);
        double all_first = 0.0;
        for (const auto& layer : layers) all_first += layer.error.front();
        REQUIRE(greedy.error <= all_first + 1e-9);  // every greedy step lowers the error
    }
}

TEST_CASE("kernel allocation: where the greedy falls short, the exact solver does not", "[allocation]") {
    // Layer 0 gains 5 for 10 bits (0.5 per bit), layer 1 gains 9 for 20 bits (0.45 per bit), and
    // only 20 extra bits are allowed: the greedy takes layer 0 first, then layer 1 no longer fits.
    const std::vector<LayerKernelOptions> bang_for_bit{{10, {10, 20}, {10.0, 5.0}}, {10, {10, 30}, {10.0, 1.0}}};
    const double budget = 40.0 / 20.0;
    const auto greedy = allocate_kernels(bang_for_bit, budget, AllocationSolver::greedy);
    const auto exact = allocate_kernels(bang_for_bit, budget);
    REQUIRE(greedy.kernels == std::vector<std::size_t>{2, 1});
    REQUIRE(greedy.error == 15.0);
    REQUIRE(exact.kernels == std::vector<std::size_t>{1, 2});
    REQUIRE(exact.error == 11.0);
    REQUIRE(exact.cost_bits == 40);
    REQUIRE(exact.bits_per_weight == 2.0);

    // A non-convex curve: a second kernel gains nothing, a third a lot. The greedy looks one
    // kernel ahead and never starts; the exact solver goes to K = 3.
    const std::vector<LayerKernelOptions> late_gain{{8, {8, 16, 24}, {4.0, 4.0, 0.5}}};
    REQUIRE(allocate_kernels(late_gain, 3.0, AllocationSolver::greedy).kernels == std::vector<std::size_t>{1});
    REQUIRE(allocate_kernels(late_gain, 3.0).kernels == std::vector<std::size_t>{3});
    REQUIRE(allocate_kernels(late_gain, 2.99).kernels == std::vector<std::size_t>{1});
}

TEST_CASE("kernel allocation: a model-sized instance with fractional budgets", "[allocation]") {
    // 32 blocks of 7 projections in LLaMA-7B shapes, K = 1..4, fp16 scales per 128 columns.
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    std::vector<LayerKernelOptions> layers;
    for (int block = 0; block < 32; ++block) {
        for (int projection = 0; projection < 4; ++projection)
            layers.push_back(group_scaled_layer(4096, 4096, 128, 4, rng));
        for (int projection = 0; projection < 2; ++projection)
            layers.push_back(group_scaled_layer(11008, 4096, 128, 4, rng));
        layers.push_back(group_scaled_layer(4096, 11008, 128, 4, rng));
    }
    double previous_error = std::numeric_limits<double>::infinity();
    for (double budget : {1.125, 1.5, 2.0, 2.5, 3.0, 3.375, 4.5, 5.0}) {
        CAPTURE(budget);
        const auto exact = allocate_kernels(layers, budget);
        REQUIRE(exact.solver == AllocationSolver::exact);
        check_allocation(exact, layers, budget);
        const auto greedy = allocate_kernels(layers, budget, AllocationSolver::greedy);
        check_allocation(greedy, layers, budget);
        REQUIRE(exact.error <= greedy.error * (1 + 1e-12));
        REQUIRE(exact.error <= previous_error);
        previous_error = exact.error;
        // K = 1 everywhere is all 1.125 bits per weight buy; from 4.5 every layer has all 4 kernels.
        if (budget == 1.125) REQUIRE(exact.kernels == std::vector<std::size_t>(layers.size(), 1));
        if (budget >= 4.5) REQUIRE(exact.kernels == std::vector<std::size_t>(layers.size(), 4));
    }
    REQUIRE(allocate_kernels(layers, 2.5).bits_per_weight > 2.25);
}

TEST_CASE("kernel allocation: a table too large for the exact solver falls back to the greedy", "[allocation]") {
    // Costs with no common unit above 1 bit and 1.2 x 10^8 spare bits: 2.4 x 10^8 table cells. The
    // spare bits buy one second kernel; layer 1's gains more per bit.
    const std::vector<LayerKernelOptions> layers{{100'000'000, {100'000'007, 200'000'014}, {2.0, 1.0}},
                                                 {100'000'000, {100'000'037, 200'000'075}, {2.0, 0.5}}};
    const double budget = 1.6;
    const auto automatic = allocate_kernels(layers, budget);
    REQUIRE(automatic.solver == AllocationSolver::greedy);
    check_allocation(automatic, layers, budget);
    REQUIRE(automatic.kernels == std::vector<std::size_t>{1, 2});
    REQUIRE_THROWS_WITH(allocate_kernels(layers, budget, AllocationSolver::exact),
                        Catch::Contains("the exact solver needs 2 x") && Catch::Contains("more than 50000000"));
    REQUIRE_THROWS_AS(allocate_kernels(layers, budget, AllocationSolver::exact), std::length_error);
}

TEST_CASE("kernel allocation: impossible budgets and invalid options are refused", "[allocation]") {
    const std::vector<LayerKernelOptions> layers{{128, {144, 288}, {3.0, 1.0}}, {128, {144, 288}, {3.0, 1.0}}};
    REQUIRE_THROWS_WITH(allocate_kernels(layers, 1.0),
                        "allocate_kernels: a budget of 1.000000 bits per weight is below 1.125000, the least any "
                        "allocation achieves (every layer at K=1)");
    REQUIRE(allocate_kernels(layers, 1.125).kernels == std::vector<std::size_t>{1, 1});
    REQUIRE_THROWS_WITH(allocate_kernels(layers, std::numeric_limits<double>::quiet_NaN()),
                        Catch::Contains("not a finite number"));

    auto bad = layers;
    bad[1].error[1] = std::numeric_limits<double>::quiet_NaN();
    REQUIRE_THROWS_WITH(allocate_kernels(bad, 3.0), Catch::Contains("allocate_kernels: layer 1 error at K=2 is") &&
                                                        Catch::Contains("not a finite number"));
    bad = layers;
    bad[0].error[0] = std::numeric_limits<double>::infinity();
    REQUIRE_THROWS_WITH(allocate_kernels(bad, 3.0),
                        "allocate_kernels: layer 0 error at K=1 is inf, not a finite number");
    bad = layers;
    bad[1].cost_bits[1] = 144;
    REQUIRE_THROWS_WITH(allocate_kernels(bad, 3.0),
                        "allocate_kernels: layer 1 costs 144 bits at K=2, not more than 144 at K=1");
    bad = layers;
    bad[0].error.pop_back();
    REQUIRE_THROWS_WITH(allocate_kernels(bad, 3.0),
                        "allocate_kernels: layer 0 has 2 costs and 1 errors, expected "
                        "the same number (at least 1)");
    bad = layers;
    bad[1].weights = 0;
    REQUIRE_THROWS_WITH(allocate_kernels(bad, 3.0), "allocate_kernels: layer 1 has no weights");
    REQUIRE_THROWS_WITH(allocate_kernels({}, 3.0), "allocate_kernels: no layers to allocate kernels to");
}
