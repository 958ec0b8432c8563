#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <multibool/backends/thread_pool.hpp>
#include <multibool/core/binary_io.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/training/bold_policy.hpp>
#include <multibool/training/counter_random.hpp>
#include <multibool/training/expected_improvement_policy.hpp>
#include <multibool/training/flip_optimizer.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;
using multibool::testing::random_matrix;
using multibool::testing::read_state_from;
using multibool::testing::state_of;

namespace {

// 45 columns in groups of 32: a ragged last group.
using Matrix = BitPlaneMatrix<3, 32>;

static_assert(FlipOptimizer<ExpectedImprovementPolicy, Matrix>);
static_assert(FlipOptimizer<BoldPolicy<float>, Matrix>);
static_assert(FlipOptimizer<BoldPolicy<half>, Matrix>);
static_assert(FlipOptimizer<BoldPolicy<std::int8_t>, Matrix>);

// Gr = W_hat - T: the gradient of L = 0.5 ||W_hat - T||^2, dense (fine in a test).
template <class M>
std::vector<float> quadratic_gradient(const M& m, const std::vector<float>& target) {
    auto gradient = m.dequantize();
    for (std::size_t e = 0; e < gradient.size(); ++e) gradient[e] -= target[e];
    return gradient;
}

// dL_kij = -2 alpha b Gr in double.
template <class M>
double loss_change(const M& m, const std::vector<float>& gradient, std::size_t k, std::size_t i, std::size_t j) {
    const double alpha = double(m.scale(k, i, j / m.group_size()));
    return -2.0 * alpha * m.sign(k, i, j) * double(gradient[i * m.cols() + j]);
}

// The exact change of 0.5 ||W_hat - T||^2 when bit (k, i, j) alone flips, in double.
template <class M>
double exact_flip_change(const M& m, const std::vector<float>& target, std::size_t k, std::size_t i, std::size_t j) {
    double w = 0;
    for (std::size_t l = 0; l < M::kernels; ++l) w += double(m.scale(l, i, j / m.group_size())) * m.sign(l, i, j);
    const double step = -2.0 * double(m.scale(k, i, j / m.group_size())) * m.sign(k, i, j);
    const double t = target[i * m.cols() + j];
    return 0.5 * ((w + step - t) * (w + step - t) - (w - t) * (w - t));
}

struct Tiling {
    std::size_t tile_rows;
    bool reverse = false;
    std::size_t threads = 1;
};

// One step: the gradient handed over in tiles of tile_rows rows, in order or reversed, from one
// thread or several; the statistics merged in whatever order the tiles finish.
template <class Policy, class M>
FlipStatistics step(Policy& policy, M& m, const std::vector<float>& gradient, FlipContext context, Tiling tiling) {
    policy.begin_step(context);
    const std::size_t rows = m.rows();
    const std::size_t cols = m.cols();
    const std::size_t tiles = (rows + tiling.tile_rows - 1) / tiling.tile_rows;
    FlipStatistics total;
    std::mutex mutex;
    auto apply_tile = [&](std::size_t t) {
        const std::size_t tile = tiling.reverse ? tiles - 1 - t : t;
        const std::size_t first = tile * tiling.tile_rows;
        const std::size_t count = std::min(tiling.tile_rows, rows - first);
        const MatrixView<const float> view(std::span<const float>(gradient).subspan(first * cols, count * cols), count,
                                           cols);
        const FlipStatistics stats = policy.apply(m, first, view);
        const std::lock_guard lock(mutex);
        total += stats;
    };
    parallel_for(tiling.threads, tiles, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t t = begin; t < end; ++t) apply_tile(t);
    });
    policy.end_step(total);
    return total;
}

template <class Policy, class M>
FlipStatistics step(Policy& policy, M& m, const std::vector<float>& gradient, std::uint64_t step_index = 1) {
    return step(policy, m, gradient, FlipContext{step_index, 0}, Tiling{m.rows()});
}

template <class M>
bool plane_equal(const M& a, const M& b, std::size_t k) {
    for (std::size_t i = 0; i < a.rows(); ++i) {
        if (!std::ranges::equal(a.plane_row(k, i), b.plane_row(k, i))) return false;
    }
    return true;
}

std::vector<float> normal_target(std::size_t count, std::mt19937_64& rng) {
    return multibool::testing::random_floats(count, rng, 2.0f);
}

}  // namespace

TEST_CASE("counter_uniform is SplitMix64 absorbing each coordinate, also from a row's hash", "[training][flip]") {
    // The formula of counter_random.hpp written out again: saved runs and checkpoints depend on it.
    const auto mix = [](std::uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    std::mt19937_64 rng(fresh_seed());
    for (int draw = 0; draw < 1000; ++draw) {
        std::uint64_t t[6];
        for (auto& x : t) x = rng() >> (rng() % 64);
        std::uint64_t h = t[0];
        for (int c = 1; c < 6; ++c) h = mix(h + (t[c] + 1) * 0x9E3779B97F4A7C15ull);
        const double expected = double(h >> 11) * 0x1.0p-53;
        CAPTURE(t[0], t[1], t[2], t[3], t[4], t[5]);
        REQUIRE(counter_uniform(t[0], t[1], t[2], t[3], t[4], t[5]) == expected);
        REQUIRE(counter_uniform_in_row(counter_row_hash(t[0], t[1], t[2], t[3], t[4]), t[5]) == expected);
    }
}

TEST_CASE("counter_uniform is a pure function of its tuple and looks uniform", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    CHECK(counter_uniform(seed, 3, 1, 2, 17, 40) == counter_uniform(seed, 3, 1, 2, 17, 40));
    CHECK(counter_uniform(seed, 3, 1, 2, 17, 40) != counter_uniform(seed, 3, 1, 2, 17, 41));
    CHECK(counter_uniform(seed, 3, 1, 2, 17, 40) != counter_uniform(seed + 1, 3, 1, 2, 17, 40));
    // Sweep each coordinate in turn over 1e5 consecutive values (the hard case for a weak mix):
    // chi-square over 100 bins has mean 99 and standard deviation 14; the bound is loose.
    constexpr std::size_t draws = 100000;
    constexpr std::size_t bins = 100;
    for (std::size_t coordinate = 0; coordinate < 6; ++coordinate) {
        CAPTURE(coordinate);
        std::vector<std::size_t> counts(bins, 0);
        double sum = 0;
        for (std::uint64_t c = 0; c < draws; ++c) {
            std::uint64_t t[6] = {seed, 5, 2, 1, 9, 33};
            t[coordinate] += c;
            const double u = counter_uniform(t[0], t[1], t[2], t[3], t[4], t[5]);
            REQUIRE(u >= 0.0);
            REQUIRE(u < 1.0);
            ++counts[std::size_t(u * bins)];
            sum += u;
        }
        double chi_square = 0;
        const double expected = double(draws) / bins;
        for (const std::size_t n : counts) chi_square += (double(n) - expected) * (double(n) - expected) / expected;
        CHECK(chi_square < 200.0);
        CHECK(sum / draws == Approx(0.5).margin(0.005));
    }
}

TEST_CASE("ExactSum does not depend on the order of its terms", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    std::lognormal_distribution<double> dist(-3.0, 3.0);
    std::vector<double> values(1000);
    for (auto& v : values) v = dist(rng);
    ExactSum forward;
    double reference = 0;
    for (const double v : values) {
        forward.add(v);
        reference += v;
    }
    std::ranges::shuffle(values, rng);
    ExactSum first_half, second_half;
    for (std::size_t e = 0; e < values.size(); ++e) (e < 500 ? first_half : second_half).add(values[e]);
    second_half += first_half;
    CHECK(second_half == forward);
    CHECK(forward.value() == Approx(reference).epsilon(1e-12));
}

TEST_CASE("ExactSum adds a float exactly as the double it widens to", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    // Every binade a float has (subnormals, the 2^-64 resolution, the 2^63 clamp), both signs,
    // and the special values.
    std::vector<float> values{0.0f,
                              -0.0f,
                              0x1p-149f,
                              0x1p-126f,
                              0x1p-65f,
                              0x1.fffffep-65f,
                              0x1p-64f,
                              0x1.000002p-64f,
                              0x1p-41f,
                              1.0f,
                              0x1.fffffep62f,
                              0x1p63f,
                              0x1p100f,
                              std::numeric_limits<float>::max(),
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN()};
    std::uniform_int_distribution<std::uint32_t> any_bits;
    for (int e = 0; e < 20000; ++e) values.push_back(std::bit_cast<float>(any_bits(rng)));
    for (const float v : values) {
        ExactSum from_float, from_double;
        from_float.add(0.75);  // a carry into the whole part must propagate alike
        from_double.add(0.75);
        from_float.add(v);
        from_double.add(double(v));
        CAPTURE(v);
        REQUIRE(from_float == from_double);
    }
}

TEST_CASE("the deterministic limit takes every candidate, and each flip alone lowers a quadratic loss",
          "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 23;
    const std::size_t cols = 45;
    auto m = random_matrix<Matrix>(rows, cols, rng);
    // A small step: T sits 1.5 to 3 times the row-group's largest |alpha| away from W_hat, so no
    // single flip overshoots and first order predicts the exact sign.
    const auto w = m.dequantize();
    std::vector<float> target(rows * cols);
    std::uniform_real_distribution<float> distance(1.5f, 3.0f);
    std::bernoulli_distribution coin(0.5);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) {
            float largest = 0;
            for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                largest = std::max(largest, std::fabs(m.scale(k, i, j / m.group_size())));
            }
            target[i * cols + j] = w[i * cols + j] + (coin(rng) ? 1.0f : -1.0f) * distance(rng) * largest;
        }
    }
    const auto gradient = quadratic_gradient(m, target);
    const Matrix before = m;
    ExpectedImprovementPolicy policy({.deterministic = true, .trainable = TrainableKernels::all()});
    const auto stats = step(policy, m, gradient);
    std::size_t flips = 0;
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) {
                CAPTURE(k, i, j);
                const bool flipped = m.sign(k, i, j) != before.sign(k, i, j);
                const double change = loss_change(before, gradient, k, i, j);
                CHECK(flipped == (change < 0));
                if (flipped) {
                    CHECK(exact_flip_change(before, target, k, i, j) < 0);
                    ++flips;
                }
            }
        }
    }
    CHECK(flips > 0);
    CHECK(stats.flips() == flips);
    CHECK(stats.candidates() == flips);
}

TEST_CASE("no policy flips a bit whose first-order loss change is not negative", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 40;
    const std::size_t cols = 45;
    const auto original = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);
    auto gradient = quadratic_gradient(original, target);
    for (std::size_t e = 0; e < gradient.size(); e += 5) gradient[e] = 0;  // dL = 0 exactly: never a candidate

    auto check_flips = [&](const Matrix& after, const char* policy) {
        CAPTURE(policy);
        std::size_t flips = 0;
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            for (std::size_t i = 0; i < rows; ++i) {
                for (std::size_t j = 0; j < cols; ++j) {
                    if (after.sign(k, i, j) == original.sign(k, i, j)) continue;
                    CAPTURE(k, i, j);
                    CHECK(loss_change(original, gradient, k, i, j) < 0);
                    ++flips;
                }
            }
        }
        CHECK(flips > 0);
    };
    SECTION("expected improvement, stochastic") {
        auto m = original;
        ExpectedImprovementPolicy policy(
            {.seed = seed, .eta = 0.5, .initial_tau = 1.0, .trainable = TrainableKernels::all()});
        step(policy, m, gradient);
        check_flips(m, "expected improvement");
    }
    SECTION("BOLD, first step") {
        auto m = original;
        BoldPolicy<float> policy(m, {.eta = 1.0, .trainable = TrainableKernels::all()});
        step(policy, m, gradient);
        check_flips(m, "BOLD");
    }
}

TEST_CASE("the expected-improvement policy measures tau on its first step and caps flips per row", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 30;
    const std::size_t cols = 45;
    auto m = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);

    SECTION("tau") {
        ExpectedImprovementPolicy policy({.seed = seed, .eta = 0.5, .tau_momentum = 0.75});
        const Matrix before = m;
        const auto first = step(policy, m, quadratic_gradient(m, target), 1);
        CHECK(first.flips() == 0);
        CHECK(m == before);
        REQUIRE(first.candidates() > 0);
        CHECK(policy.tau() == first.mean_candidate_gain());
        const double tau = policy.tau();
        const auto second = step(policy, m, quadratic_gradient(m, target), 2);
        CHECK(second.flips() > 0);
        CHECK(policy.tau() == Approx(0.75 * tau + 0.25 * second.mean_candidate_gain()));
    }
    SECTION("cap: the largest -dL of each row and kernel, ties by column") {
        const double fraction = 0.1;
        const auto cap = std::size_t(std::ceil(fraction * cols));  // 5
        ExpectedImprovementPolicy policy(
            {.max_flip_fraction = fraction, .deterministic = true, .trainable = TrainableKernels::all()});
        auto gradient = quadratic_gradient(m, target);
        for (std::size_t j = 0; j < cols; ++j) gradient[j] = 1.0f;  // row 0: many equal gains per group
        const Matrix before = m;
        step(policy, m, gradient);
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            for (std::size_t i = 0; i < rows; ++i) {
                CAPTURE(k, i);
                std::vector<std::pair<double, std::size_t>> candidates;  // (-dL, column)
                for (std::size_t j = 0; j < cols; ++j) {
                    const double change = loss_change(before, gradient, k, i, j);
                    if (change < 0) candidates.emplace_back(-change, j);
                }
                std::ranges::sort(candidates, [](const auto& a, const auto& b) {
                    return a.first != b.first ? a.first > b.first : a.second < b.second;
                });
                candidates.resize(std::min(candidates.size(), cap));
                std::vector<std::size_t> expected;
                for (const auto& c : candidates) expected.push_back(c.second);
                std::ranges::sort(expected);
                std::vector<std::size_t> flipped;
                for (std::size_t j = 0; j < cols; ++j) {
                    if (m.sign(k, i, j) != before.sign(k, i, j)) flipped.push_back(j);
                }
                CHECK(flipped == expected);
            }
        }
    }
}

TEST_CASE("only the trainable kernels change", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 20;
    const std::size_t cols = 45;
    const auto original = random_matrix<Matrix>(rows, cols, rng);
    const auto gradient = quadratic_gradient(original, normal_target(rows * cols, rng));
    const std::vector<std::pair<TrainableKernels, std::vector<bool>>> masks = {
        {TrainableKernels::last(), {false, false, true}},
        {TrainableKernels::all(), {true, true, true}},
        {TrainableKernels::only(0) | TrainableKernels::last(), {true, false, true}},
        {TrainableKernels::only(1), {false, true, false}},
    };
    for (const auto& [mask, trains] : masks) {
        for (bool bold : {false, true}) {
            CAPTURE(bold, trains);
            auto m = original;
            if (bold) {
                BoldPolicy<float> policy(m, {.eta = 1.0, .trainable = mask});
                step(policy, m, gradient);
            } else {
                ExpectedImprovementPolicy policy({.deterministic = true, .trainable = mask});
                step(policy, m, gradient);
            }
            for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                CAPTURE(k);
                CHECK(plane_equal(m, original, k) != trains[k]);
            }
            CHECK(std::ranges::equal(m.scale_data(), original.scale_data()));
        }
    }
}

TEST_CASE("flips do not depend on the tiling, the tile order or the thread count", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 150;
    const std::size_t cols = 45;
    const auto original = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);
    const std::vector<Tiling> tilings = {{rows}, {1}, {7}, {64}, {7, true}, {1, true}, {7, false, 2}, {1, true, 2}};

    // Four steps on the quadratic loss; the bits, statistics and step-level state after each.
    auto train = [&](auto make_policy, Tiling tiling) {
        auto policy = make_policy();
        auto m = original;
        std::vector<FlipStatistics> history;
        for (std::uint64_t s = 1; s <= 4; ++s) {
            history.push_back(step(policy, m, quadratic_gradient(m, target), FlipContext{s, 3}, tiling));
        }
        return std::make_pair(m, history);
    };
    auto check_all_tilings = [&](auto make_policy) {
        const auto [reference, reference_history] = train(make_policy, tilings.front());
        std::size_t flips = 0;
        for (const auto& s : reference_history) flips += s.flips();
        CHECK(flips > 0);
        for (const Tiling& tiling : tilings) {
            CAPTURE(tiling.tile_rows, tiling.reverse, tiling.threads);
            const auto [m, history] = train(make_policy, tiling);
            CHECK(m == reference);
            CHECK(history == reference_history);
        }
    };
    SECTION("expected improvement") {
        check_all_tilings([&] {
            return ExpectedImprovementPolicy(
                {.seed = seed, .eta = 0.3, .max_flip_fraction = 0.05, .trainable = TrainableKernels::all()});
        });
    }
    SECTION("BOLD") {
        check_all_tilings(
            [&] { return BoldPolicy<half>(original, {.eta = 0.3, .trainable = TrainableKernels::all()}); });
    }
}

TEST_CASE("BOLD by hand: a 2x3 matrix over two steps", "[training][flip]") {
    using Small = BitPlaneMatrix<1, per_row>;
    // alpha = 1 on row 0 and -0.5 on row 1 (a negative scale reverses the accumulated direction).
    const std::vector<std::int8_t> signs = {+1, -1, +1, -1, +1, +1};
    const std::vector<float> scales = {1.0f, -0.5f};
    auto m = Small::from_planes(2, 3, signs, scales);
    BoldPolicy<float> policy(m, {.eta = 0.5});
    CHECK(policy.beta() == 0.0);

    // Step 1 (beta = 0): m = 0.5 * sign(alpha) * Gr.
    //   row 0: q = [2.5, 2.5, 1] -> m = [1.25, 1.25, 0.5], m*b = [1.25, -1.25, 0.5]: flip column 0.
    //   row 1: q = -[2, 4, -1]   -> m = [-1, -2, 0.5],     m*b = [1, -2, 0.5]:     flip column 0 (m*b = 1).
    const std::vector<float> gradient1 = {2.5f, 2.5f, 1.0f, 2.0f, 4.0f, -1.0f};
    const auto first = step(policy, m, gradient1, 1);
    CHECK(first.flips() == 2);
    CHECK(first.bits() == 6);
    CHECK(policy.beta() == Approx(4.0 / 6.0));
    const std::vector<int> signs1 = {-1, -1, +1, +1, +1, +1};
    const std::vector<float> accumulator1 = {0.0f, 1.25f, 0.5f, 0.0f, -2.0f, 0.5f};
    for (std::size_t e = 0; e < 6; ++e) {
        CAPTURE(e);
        CHECK(m.sign(0, e / 3, e % 3) == signs1[e]);
        CHECK(policy.accumulator(0, e / 3, e % 3) == Approx(accumulator1[e]));
    }

    // Step 2 (beta = 2/3):
    //   row 0: q = [0, -1, 1.5]  -> m = [0, 5/6 - 1/2, 1/3 + 3/4] = [0, 1/3, 13/12], b = [-1, -1, 1]: flip column 2.
    //   row 1: q = -[1, -1, -1.5] -> m = [-1/2, -4/3 + 1/2, 1/3 + 3/4] = [-1/2, -5/6, 13/12], b = 1: flip column 2.
    const std::vector<float> gradient2 = {0.0f, -1.0f, 1.5f, 1.0f, -1.0f, -1.5f};
    const auto second = step(policy, m, gradient2, 2);
    CHECK(second.flips() == 2);
    CHECK(policy.beta() == Approx(4.0 / 6.0));
    const std::vector<int> signs2 = {-1, -1, -1, +1, +1, -1};
    const std::vector<float> accumulator2 = {0.0f, 1.0f / 3.0f, 0.0f, -0.5f, -5.0f / 6.0f, 0.0f};
    for (std::size_t e = 0; e < 6; ++e) {
        CAPTURE(e);
        CHECK(m.sign(0, e / 3, e % 3) == signs2[e]);
        CHECK(policy.accumulator(0, e / 3, e % 3) == Approx(accumulator2[e]));
    }
    // Both flips of step 2 had dL < 0: row 0 column 2: -2 * 1 * 1 * 1.5; row 1: -2 * -0.5 * 1 * -1.5.
    CHECK(second.mean_flip_gain() == Approx((3.0 + 1.5) / 2));
}

TEST_CASE("BOLD's compact accumulators agree with float", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Layer = BitPlaneMatrix<2, 64>;

    SECTION("exactly, where storage rounding cannot matter") {
        // Step 1 stores eta * Gr = c / 256 with integer |c| <= 127 and 127 in every row: exact in
        // half and in int8 with a per-row scale, and below 1, so nothing flips yet. Step 2 then
        // decides from identical state.
        const std::size_t rows = 8;
        const std::size_t cols = 100;
        const auto original = random_matrix<Layer>(rows, cols, rng);
        std::vector<float> gradient1(rows * cols);
        std::uniform_int_distribution<int> c(-127, 127);
        for (std::size_t e = 0; e < gradient1.size(); ++e) {
            gradient1[e] = float(e % cols == 0 ? 127 : c(rng)) / 256.0f;
        }
        const auto gradient2 = multibool::testing::random_floats(rows * cols, rng, 1.5f);
        auto run = [&](auto policy) {
            auto m = original;
            CHECK(step(policy, m, gradient1, 1).flips() == 0);
            for (std::size_t i = 0; i < rows; ++i) {
                for (std::size_t j = 0; j < cols; ++j) {
                    const float direction = m.scale(1, i, j / 64) > 0 ? 1.0f : -1.0f;
                    REQUIRE(policy.accumulator(1, i, j) == direction * gradient1[i * cols + j]);
                }
            }
            CHECK(step(policy, m, gradient2, 2).flips() > 0);
            return m;
        };
        const auto reference = run(BoldPolicy<float>(original, {.eta = 1.0}));
        CHECK(run(BoldPolicy<half>(original, {.eta = 1.0})) == reference);
        CHECK(run(BoldPolicy<std::int8_t>(original, {.eta = 1.0})) == reference);
    }
    SECTION("measured on a random case") {
        // 30 steps of a quadratic loss along float's trajectory: each step, every storage decides
        // from the same bits and gradient with its own accumulator. Agreement is the Jaccard index
        // of the (step, bit) flip events against float's; a flip one step early or late counts as
        // two disagreements. Measured: half 0.99-0.997, int8 0.89-0.93 (seeds 1-10).
        const std::size_t rows = 64;
        const std::size_t cols = 256;
        auto m = random_matrix<Layer>(rows, cols, rng);
        const auto target = normal_target(rows * cols, rng);
        const BoldOptions options{.eta = 0.1};
        BoldPolicy<float> reference(m, options);
        BoldPolicy<half> half_policy(m, options);
        BoldPolicy<std::int8_t> int8_policy(m, options);
        std::size_t half_both = 0, half_either = 0, int8_both = 0, int8_either = 0;
        auto compare = [&](const Layer& before, const Layer& after, const Layer& other, std::size_t& both,
                           std::size_t& either) {
            for (std::size_t i = 0; i < rows; ++i) {
                for (std::size_t j = 0; j < cols; ++j) {
                    const bool a = after.sign(1, i, j) != before.sign(1, i, j);
                    const bool b = other.sign(1, i, j) != before.sign(1, i, j);
                    both += a && b;
                    either += a || b;
                }
            }
        };
        for (std::uint64_t s = 1; s <= 30; ++s) {
            const auto gradient = quadratic_gradient(m, target);
            const Layer before = m;
            auto with_half = m;
            auto with_int8 = m;
            step(reference, m, gradient, s);
            step(half_policy, with_half, gradient, s);
            step(int8_policy, with_int8, gradient, s);
            compare(before, m, with_half, half_both, half_either);
            compare(before, m, with_int8, int8_both, int8_either);
        }
        REQUIRE(half_either > 0);
        REQUIRE(int8_either > 0);
        const double half_agreement = double(half_both) / double(half_either);
        const double int8_agreement = double(int8_both) / double(int8_either);
        INFO("BOLD flip agreement with float storage over 30 steps: half " << half_agreement << ", int8 "
                                                                           << int8_agreement);
        CHECK(half_agreement >= 0.97);
        CHECK(int8_agreement >= 0.85);
    }
}

TEST_CASE("flip statistics match a brute-force recount", "[training][flip]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 30;
    const std::size_t cols = 45;
    const auto mask = TrainableKernels::only(0) | TrainableKernels::last();
    auto m = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);

    auto recount = [&](const Matrix& before, const Matrix& after, const std::vector<float>& gradient,
                       const FlipStatistics& stats) {
        double gain = 0;
        std::size_t total_flips = 0;
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            CAPTURE(k);
            std::size_t candidates = 0;
            std::size_t flips = 0;
            for (std::size_t i = 0; i < rows; ++i) {
                for (std::size_t j = 0; j < cols; ++j) {
                    const double change = loss_change(before, gradient, k, i, j);
                    candidates += change < 0;
                    if (after.sign(k, i, j) != before.sign(k, i, j)) {
                        ++flips;
                        gain += std::fabs(change);
                    }
                }
            }
            const bool trains = mask.contains(k, Matrix::kernels);
            CHECK(stats.kernel_bits[k] == (trains ? rows * cols : 0));
            CHECK(stats.kernel_candidates[k] == (trains ? candidates : 0));
            CHECK(stats.kernel_flips[k] == flips);
            total_flips += flips;
        }
        REQUIRE(total_flips > 0);
        CHECK(stats.mean_flip_gain() == Approx(gain / double(total_flips)).epsilon(1e-5));
        CHECK(stats.flip_rate() == Approx(double(total_flips) / double(2 * rows * cols)));
    };
    SECTION("expected improvement") {
        ExpectedImprovementPolicy policy({.seed = seed, .eta = 0.5, .initial_tau = 1.0, .trainable = mask});
        for (std::uint64_t s = 1; s <= 2; ++s) {
            const auto before = m;
            const auto gradient = quadratic_gradient(m, target);
            const auto stats = step(policy, m, gradient, s);
            recount(before, m, gradient, stats);
        }
    }
    SECTION("BOLD") {
        BoldPolicy<std::int8_t> policy(m, {.eta = 0.4, .trainable = mask});
        for (std::uint64_t s = 1; s <= 3; ++s) {
            const auto before = m;
            const auto gradient = quadratic_gradient(m, target);
            const auto stats = step(policy, m, gradient, s);
            recount(before, m, gradient, stats);
        }
    }
}

TEST_CASE("optimizer state is reported per weight", "[training][flip]") {
    const Matrix m(10, 172);
    CHECK(ExpectedImprovementPolicy::state_bytes_per_weight() == 0.0);
    CHECK(BoldPolicy<float>(m).state_bytes_per_weight() == 4.0);
    CHECK(BoldPolicy<half>(m).state_bytes_per_weight() == 2.0);
    CHECK(BoldPolicy<std::int8_t>(m).state_bytes_per_weight() == Approx(1.0 + 4.0 / 172.0));
    CHECK(BoldPolicy<float>(m, {.trainable = TrainableKernels::all()}).state_bytes_per_weight() == 12.0);
}

TEST_CASE("the expected-improvement policy's state resumes training bit for bit", "[training][flip][state]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 30;
    const std::size_t cols = 45;
    auto m = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);
    const ExpectedImprovementOptions options{
        .seed = seed, .eta = 0.3, .max_flip_fraction = 0.2, .trainable = TrainableKernels::all()};
    ExpectedImprovementPolicy original(options);
    for (std::uint64_t s = 1; s <= 3; ++s) step(original, m, quadratic_gradient(m, target), s);
    REQUIRE(original.tau() > 0);
    const std::string state = state_of(original);
    REQUIRE(state.size() == sizeof(double));

    ExpectedImprovementPolicy restored(options);
    read_state_from(restored, state);
    REQUIRE(std::bit_cast<std::uint64_t>(restored.tau()) == std::bit_cast<std::uint64_t>(original.tau()));
    auto copy = m;
    std::size_t flips = 0;
    for (std::uint64_t s = 4; s <= 7; ++s) {
        CAPTURE(s);
        const auto a = step(original, m, quadratic_gradient(m, target), s);
        const auto b = step(restored, copy, quadratic_gradient(copy, target), s);
        REQUIRE(a == b);
        REQUIRE(copy == m);
        REQUIRE(std::bit_cast<std::uint64_t>(restored.tau()) == std::bit_cast<std::uint64_t>(original.tau()));
        flips += a.flips();
    }
    CHECK(flips > 0);

    // A tau the policy could not hold, or a truncated state: refused, the policy unchanged.
    ExpectedImprovementPolicy refused(options);
    for (const double tau : {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
        CAPTURE(tau);
        std::string bad(sizeof tau, '\0');
        std::memcpy(bad.data(), &tau, sizeof tau);
        REQUIRE_THROWS_WITH(read_state_from(refused, bad),
                            Catch::Contains("ExpectedImprovementPolicy tau") && Catch::Contains("finite value >= 0"));
    }
    REQUIRE_THROWS_WITH(read_state_from(refused, state.substr(0, 5)), Catch::Contains("truncated"));
    REQUIRE(refused.tau() == 0.0);
}

TEST_CASE("BOLD's state resumes training bit for bit, for every storage", "[training][flip][state]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 30;
    const std::size_t cols = 45;
    const auto start = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);
    // Kernels 0 and 2 of 3 train: the accumulator's blocks do not follow the kernel numbers.
    const BoldOptions options{.eta = 0.3, .trainable = TrainableKernels::only(0) | TrainableKernels::last()};

    const auto run = [&]<class Storage>() {
        CAPTURE(sizeof(Storage));
        // Every decoded accumulator value, as bits.
        const auto accumulators = [&](const BoldPolicy<Storage>& policy) {
            std::vector<std::uint32_t> out;
            for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                for (std::size_t i = 0; i < rows; ++i) {
                    for (std::size_t j = 0; j < cols; ++j)
                        out.push_back(std::bit_cast<std::uint32_t>(policy.accumulator(k, i, j)));
                }
            }
            return out;
        };
        auto m = start;
        BoldPolicy<Storage> original(m, options);
        for (std::uint64_t s = 1; s <= 3; ++s) step(original, m, quadratic_gradient(m, target), s);
        REQUIRE(original.beta() > 0);
        const std::string state = state_of(original);

        BoldPolicy<Storage> restored(m, options);
        const auto zero = accumulators(restored);
        read_state_from(restored, state);
        REQUIRE(std::bit_cast<std::uint64_t>(restored.beta()) == std::bit_cast<std::uint64_t>(original.beta()));
        REQUIRE(accumulators(restored) == accumulators(original));
        REQUIRE(accumulators(restored) != zero);
        auto copy = m;
        std::size_t flips = 0;
        for (std::uint64_t s = 4; s <= 7; ++s) {
            CAPTURE(s);
            const auto a = step(original, m, quadratic_gradient(m, target), s);
            const auto b = step(restored, copy, quadratic_gradient(copy, target), s);
            REQUIRE(a == b);
            REQUIRE(copy == m);
            REQUIRE(accumulators(restored) == accumulators(original));
            flips += a.flips();
        }
        CHECK(flips > 0);
        // Including the int8 row scales, byte for byte.
        REQUIRE(state_of(restored) == state_of(original));

        // Another shape, trainable set or storage: refused by field, the policy unchanged.
        const auto refuses = [&](auto policy, const std::string& bytes, const char* field, const char* values) {
            const std::string before = state_of(policy);
            REQUIRE_THROWS_AS(read_state_from(policy, bytes), FormatError);
            REQUIRE_THROWS_WITH(read_state_from(policy, bytes), Catch::Contains(field) && Catch::Contains(values));
            REQUIRE(state_of(policy) == before);
        };
        refuses(BoldPolicy<Storage>(2, rows, cols, options), state, "BoldPolicy kernels", "expected 2, found 3");
        refuses(BoldPolicy<Storage>(3, rows + 1, cols, options), state, "BoldPolicy rows", "expected 31, found 30");
        refuses(BoldPolicy<Storage>(3, rows, cols - 1, options), state, "BoldPolicy cols", "expected 44, found 45");
        refuses(BoldPolicy<Storage>(start, {.eta = 0.3}), state, "BoldPolicy trainable kernels", "expected 4, found 5");
        using Other = std::conditional_t<std::is_same_v<Storage, float>, half, float>;
        refuses(BoldPolicy<Other>(start, options), state, "BoldPolicy accumulator storage bytes", "found");
        // Truncated anywhere; a beta outside [0, 1]; values store() never writes.
        for (const std::size_t keep : {std::size_t{0}, std::size_t{30}, state.size() / 2, state.size() - 1}) {
            CAPTURE(keep);
            refuses(BoldPolicy<Storage>(start, options), state.substr(0, keep), "BoldPolicy", "truncated");
        }
        const std::size_t beta_offset = 3 * 8 + 2 * 4;
        const std::size_t values_offset = beta_offset + 8 + 8;
        std::string corrupt = state;
        const double beta = 1.5;
        std::memcpy(corrupt.data() + beta_offset, &beta, sizeof beta);
        refuses(BoldPolicy<Storage>(start, options), corrupt, "BoldPolicy beta", "[0, 1]");
        corrupt = state;
        if constexpr (std::is_same_v<Storage, std::int8_t>) {
            corrupt[values_offset + 7] = char(-128);
            refuses(BoldPolicy<Storage>(start, options), corrupt, "BoldPolicy accumulator", "element 7");
            corrupt = state;
            const float scale = 1.0f;
            std::memcpy(corrupt.data() + values_offset + 2 * rows * cols + 8 + 4 * 5, &scale, sizeof scale);
            refuses(BoldPolicy<Storage>(start, options), corrupt, "BoldPolicy accumulator row scales", "row 5");
        } else {
            const auto nan = Storage(std::numeric_limits<float>::quiet_NaN());
            std::memcpy(corrupt.data() + values_offset + 7 * sizeof nan, &nan, sizeof nan);
            refuses(BoldPolicy<Storage>(start, options), corrupt, "BoldPolicy accumulator", "NaN at element 7");
        }
    };
    run.operator()<float>();
    run.operator()<half>();
    run.operator()<std::int8_t>();
}

TEST_CASE("BOLD with beta 0 forgets infinite evidence instead of making NaN", "[training][flip][state]") {
    std::mt19937_64 rng(17);
    const std::size_t rows = 4, cols = 40;
    auto m = random_matrix<Matrix>(rows, cols, rng);
    const auto target = normal_target(rows * cols, rng);
    const auto run = [&]<class Storage>() {
        CAPTURE(sizeof(Storage));
        BoldPolicy<Storage> policy(m, {.eta = 0.3});
        REQUIRE(policy.beta() == 0.0);  // a fresh policy: beta_1 = 0
        // Its state with element 3 infinite (fp16 saturates there; float can hold it too).
        std::string state = state_of(policy);
        const auto infinite = Storage(std::numeric_limits<float>::infinity());
        std::memcpy(state.data() + 3 * 8 + 2 * 4 + 8 + 8 + 3 * sizeof infinite, &infinite, sizeof infinite);
        read_state_from(policy, state);
        REQUIRE(std::isinf(policy.accumulator(Matrix::kernels - 1, 0, 3)));
        auto copy = m;
        step(policy, copy, quadratic_gradient(copy, target), 1);
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j)
                REQUIRE(std::isfinite(policy.accumulator(Matrix::kernels - 1, i, j)));
        }
        BoldPolicy<Storage> resumed(m, {.eta = 0.3});
        read_state_from(resumed, state_of(policy));  // the state it saves loads again
    };
    run.operator()<float>();
    run.operator()<half>();
}
