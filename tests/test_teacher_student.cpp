#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/solvers/greedy_residual.hpp>
#include <multibool/training/bold_policy.hpp>
#include <multibool/training/boolean_trainer.hpp>
#include <multibool/training/expected_improvement_policy.hpp>

#include "test_support.hpp"

// Teacher–student learning (docs/METHOD.md §5): a student layer learns a teacher's outputs on fresh random
// inputs from flips of its last kernel alone, with loss L = 0.5 ||Y_s - Y_t||^2 / batch.

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

using Matrix = BitPlaneMatrix<2, 64>;
constexpr std::size_t rows = 48, cols = 256, batch = 64;

using testing::view;

// Random signs; positive scales of the sizes the greedy initializer gives a unit-variance row
// (alpha_0 ~ 0.8, alpha_1 ~ 0.5), varied per group.
Matrix random_teacher(std::mt19937_64& rng) {
    std::vector<std::int8_t> signs(Matrix::kernels * rows * cols);
    std::bernoulli_distribution coin(0.5);
    for (auto& s : signs) s = coin(rng) ? 1 : -1;
    const std::size_t groups = cols / 64;
    std::vector<float> scales(Matrix::kernels * rows * groups);
    std::uniform_real_distribution<float> first(0.6f, 1.0f), last(0.3f, 0.6f);
    for (std::size_t e = 0; e < scales.size(); ++e) scales[e] = e < rows * groups ? first(rng) : last(rng);
    return Matrix::from_planes(rows, cols, signs, scales);
}

// Y = X W^T for a dense row-major W, in double then rounded.
std::vector<float> dense_outputs(const std::vector<float>& w, const std::vector<float>& x) {
    std::vector<float> y(batch * rows);
    for (std::size_t t = 0; t < batch; ++t) {
        for (std::size_t i = 0; i < rows; ++i) {
            double s = 0;
            for (std::size_t j = 0; j < cols; ++j) s += double(x[t * cols + j]) * w[i * cols + j];
            y[t * rows + i] = float(s);
        }
    }
    return y;
}

// The teacher: a multi-Boolean matrix, whose outputs come from the same backend as the student's
// (so a row whose bits all match gives dY = 0 exactly), or a dense float matrix.
struct Teacher {
    const Matrix* boolean = nullptr;
    std::vector<float> dense;

    [[nodiscard]] std::vector<float> outputs(const std::vector<float>& x) const {
        if (boolean == nullptr) return dense_outputs(dense, x);
        std::vector<float> y(batch * rows);
        ScalarBackend{}.gemm(*boolean, view(x, batch, cols), view(y, batch, rows));
        return y;
    }
};

std::vector<float> student_outputs(const Matrix& m, const std::vector<float>& x) {
    std::vector<float> y(batch * rows);
    ScalarBackend{}.gemm(m, view(x, batch, cols), view(y, batch, rows));
    return y;
}

// Mean of (y_s - y_t)^2 over a fixed evaluation batch.
double output_mse(const Matrix& m, const Teacher& teacher, const std::vector<float>& x_eval) {
    const auto ys = student_outputs(m, x_eval);
    const auto yt = teacher.outputs(x_eval);
    double sum = 0;
    for (std::size_t e = 0; e < ys.size(); ++e) sum += (double(ys[e]) - yt[e]) * (double(ys[e]) - yt[e]);
    return sum / double(ys.size());
}

// A batch of inputs: independent unit normals z, plus u V for a 4 x cols mixing V and unit
// normals u when V is given. Correlated inputs make the output error differ from the weight error,
// as real activations do; with independent ones the greedy initializer's last kernel is already
// the best for a dense teacher, bit by bit.
std::vector<float> inputs(std::mt19937_64& rng, const std::vector<float>& mixing) {
    auto x = testing::random_floats(batch * cols, rng);
    const std::size_t rank = mixing.size() / cols;
    for (std::size_t t = 0; t < batch; ++t) {
        const auto u = testing::random_floats(rank, rng);
        for (std::size_t q = 0; q < rank; ++q) {
            for (std::size_t j = 0; j < cols; ++j) x[t * cols + j] += u[q] * mixing[q * cols + j];
        }
    }
    return x;
}

struct Schedule {
    std::size_t steps;
    std::size_t tiles = 16;
    std::size_t threads = 1;
    // Rank-4 correlation of the inputs (empty: independent), see inputs().
    std::vector<float> mixing = {};
};

// Trains `policy` on `student` for the schedule with inputs drawn from data_seed; calls
// observe(step, matrix) before the first step and after every step.
template <class Policy, class Observe>
Matrix train(Matrix student, Policy policy, const Teacher& teacher, Schedule schedule, std::uint64_t data_seed,
             Observe&& observe) {
    BooleanTrainer trainer(std::move(student), std::move(policy), ScalarBackend{},
                           GradientTiling{schedule.tiles, schedule.threads});
    std::mt19937_64 rng(data_seed);
    std::vector<float> dy(batch * rows), dx(batch * cols);
    observe(std::size_t{0}, trainer.matrix());
    for (std::size_t s = 0; s < schedule.steps; ++s) {
        const auto x = inputs(rng, schedule.mixing);
        const auto ys = student_outputs(trainer.matrix(), x);
        const auto yt = teacher.outputs(x);
        for (std::size_t e = 0; e < dy.size(); ++e) dy[e] = (ys[e] - yt[e]) / float(batch);
        trainer.step(view(x, batch, cols), view(dy, batch, rows), view(dx, batch, cols), FlipContext{s, 0});
        observe(s + 1, trainer.matrix());
    }
    return trainer.matrix();
}

template <class Policy>
Matrix train(Matrix student, Policy policy, const Teacher& teacher, Schedule schedule, std::uint64_t data_seed) {
    return train(std::move(student), std::move(policy), teacher, schedule, data_seed,
                 [](std::size_t, const Matrix&) {});
}

// Fraction of the given last-kernel positions where the student's bit equals the teacher's.
double recovered(const Matrix& student, const Matrix& teacher, const std::vector<std::size_t>& flipped) {
    std::size_t same = 0;
    for (const std::size_t e : flipped)
        same += std::size_t{student.sign(1, e / cols, e % cols) == teacher.sign(1, e / cols, e % cols)};
    return double(same) / double(flipped.size());
}

// The teacher with 10 % of its last-kernel bits flipped at random; `flipped` gets their positions.
Matrix perturbed(const Matrix& teacher, std::mt19937_64& rng, std::vector<std::size_t>& flipped) {
    Matrix student = teacher;
    std::vector<std::size_t> positions(rows * cols);
    for (std::size_t e = 0; e < positions.size(); ++e) positions[e] = e;
    std::shuffle(positions.begin(), positions.end(), rng);
    flipped.assign(positions.begin(), positions.begin() + std::ptrdiff_t(positions.size() / 10));
    for (const std::size_t e : flipped) student.flip(1, e / cols, e % cols);
    return student;
}

}  // namespace

TEST_CASE("teacher-student: every policy recovers the flipped bits of a multi-Boolean teacher", "[training][teacher]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Matrix teacher_matrix = random_teacher(rng);
    const Teacher teacher{&teacher_matrix, {}};
    std::vector<std::size_t> flipped;
    const Matrix student = perturbed(teacher_matrix, rng, flipped);
    const auto x_eval = inputs(rng, {});
    const double before = output_mse(student, teacher, x_eval);

    auto check = [&](const Matrix& trained) {
        CHECK(recovered(trained, teacher_matrix, flipped) >= 0.99);
        CHECK(output_mse(trained, teacher, x_eval) <= before / 100);
    };
    // The tau-normalized probabilities saturate at eta = 1 for the wrong bits; the cap of one
    // flip per row and step is what makes it converge: at batch 64 a wrong bit's gradient is
    // hardly above the noise its row's other wrong bits put on the right ones, and uncapped the
    // noise flips outnumber the corrections. A row whose bits all match gets dY = 0: it is done.
    SECTION("expected improvement: eta 1, at most 1 flip per row and step, 250 steps") {
        check(train(student, ExpectedImprovementPolicy({.seed = seed, .eta = 1.0, .max_flip_fraction = 1.0 / cols}),
                    teacher, {250}, seed + 1));
    }
    // The accumulator averages the noise away over steps: measured 100 % recovered by step ~20.
    SECTION("BOLD, float accumulator: eta 0.3, 40 steps") {
        check(train(student, BoldPolicy<float>(student, {.eta = 0.3}), teacher, {40}, seed + 1));
    }
    SECTION("BOLD, fp16 accumulator: eta 0.3, 40 steps") {
        check(train(student, BoldPolicy<half>(student, {.eta = 0.3}), teacher, {40}, seed + 1));
    }
    SECTION("BOLD, int8 accumulator: eta 0.3, 40 steps") {
        check(train(student, BoldPolicy<std::int8_t>(student, {.eta = 0.3}), teacher, {40}, seed + 1));
    }
}

TEST_CASE("teacher-student: a dense teacher's student ends well below its greedy initialization",
          "[training][teacher]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Teacher teacher{nullptr, testing::random_floats(rows * cols, rng)};
    const Matrix student = greedy_residual<Matrix>(view(teacher.dense, rows, cols));
    const auto mixing = testing::random_floats(4 * cols, rng);
    const auto x_eval = inputs(rng, mixing);
    const double before = output_mse(student, teacher, x_eval);
    // Flips of the last kernel only, no scale step, 60 steps. Measured: mostly 0.25-0.35 of the
    // initial output MSE for both policies; BOLD fluctuates, and at eta 0.02 one seed in 36 ended
    // above its start (eta 0.01 is steadier). Required: at most 0.8.
    const Schedule schedule{.steps = 60, .mixing = mixing};
    SECTION("expected improvement: eta 1, at most 1 flip per row and step") {
        const Matrix trained =
            train(student, ExpectedImprovementPolicy({.seed = seed, .eta = 1.0, .max_flip_fraction = 1.0 / cols}),
                  teacher, schedule, seed + 1);
        CHECK(output_mse(trained, teacher, x_eval) <= 0.8 * before);
    }
    SECTION("BOLD, float accumulator: eta 0.01") {
        const Matrix trained = train(student, BoldPolicy<float>(student, {.eta = 0.01}), teacher, schedule, seed + 1);
        CHECK(output_mse(trained, teacher, x_eval) <= 0.8 * before);
    }
}

TEST_CASE("teacher-student: the same seed gives the same bits for any thread count and tile size",
          "[training][teacher]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Matrix teacher_matrix = random_teacher(rng);
    const Teacher teacher{&teacher_matrix, {}};
    std::vector<std::size_t> flipped;
    const Matrix student = perturbed(teacher_matrix, rng, flipped);
    auto same_bits = [&](auto make_policy) {
        const Matrix reference = train(student, make_policy(), teacher, {.steps = 10, .tiles = 16, .threads = 1}, seed);
        REQUIRE(reference.words().size() > 0);
        for (const auto& [tiles, threads] : {std::pair<std::size_t, std::size_t>{16, 2}, {64, 1}, {64, 2}, {5, 2}}) {
            CAPTURE(tiles, threads);
            const Matrix other =
                train(student, make_policy(), teacher, {.steps = 10, .tiles = tiles, .threads = threads}, seed);
            CHECK(std::ranges::equal(other.words(), reference.words()));
        }
    };
    // Probabilities below 1 (eta 0.3, no cap), so the counter-based draws decide.
    same_bits([&] { return ExpectedImprovementPolicy({.seed = seed, .eta = 0.3}); });
    same_bits([&] { return BoldPolicy<std::int8_t>(student, {.eta = 0.1}); });
}
