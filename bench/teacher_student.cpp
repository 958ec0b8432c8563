// multibool-teacher-student: the teacher–student curves of the flip policies (docs/METHOD.md §5), as Markdown.
// A 48 x 256 student (K = 2, G = 64) learns a teacher's outputs on fresh random inputs (batch 64)
// from flips of its last kernel alone, loss 0.5 ||Y_s - Y_t||^2 / batch, no scale step:
//   * multi-Boolean teacher: the student is the teacher with 10 % of its last-kernel bits flipped;
//   * dense float teacher (unit normal): the student is its greedy_residual initialization, and the
//     inputs carry a rank-4 correlation (unit-normal mixing), so output error is not weight error.
// The same settings as tests/test_teacher_student.cpp. Output MSE on a fixed evaluation batch.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/half.hpp>
#include <multibool/solvers/greedy_residual.hpp>
#include <multibool/training/bold_policy.hpp>
#include <multibool/training/boolean_trainer.hpp>
#include <multibool/training/expected_improvement_policy.hpp>

namespace {

using namespace multibool;
using Matrix = BitPlaneMatrix<2, 64>;
constexpr std::size_t rows = 48, cols = 256, batch = 64;
constexpr std::uint64_t seed = 2026;

std::vector<float> normals(std::size_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// z + u V for unit normals z (batch x cols) and u (batch x rank), V = mixing (rank x cols).
std::vector<float> inputs(std::mt19937_64& rng, const std::vector<float>& mixing) {
    auto x = normals(batch * cols, rng);
    const std::size_t rank = mixing.size() / cols;
    for (std::size_t t = 0; t < batch; ++t) {
        const auto u = normals(rank, rng);
        for (std::size_t q = 0; q < rank; ++q) {
            for (std::size_t j = 0; j < cols; ++j) x[t * cols + j] += u[q] * mixing[q * cols + j];
        }
    }
    return x;
}

std::vector<float> outputs(const Matrix& m, const std::vector<float>& x) {
    std::vector<float> y(batch * rows);
    ScalarBackend{}.gemm(m, MatrixView<const float>(std::span(x), batch, cols),
                         MatrixView<float>(std::span(y), batch, rows));
    return y;
}

struct Setup {
    const char* title;
    Matrix student;
    std::vector<float> mixing;
    std::vector<float> x_eval;
    const Matrix* boolean_teacher;     // or
    std::vector<float> dense_teacher;  // rows x cols
    std::vector<std::size_t> flipped;  // last-kernel positions flipped (multi-Boolean teacher)

    [[nodiscard]] std::vector<float> teacher_outputs(const std::vector<float>& x) const {
        if (boolean_teacher != nullptr) return outputs(*boolean_teacher, x);
        std::vector<float> y(batch * rows);
        for (std::size_t t = 0; t < batch; ++t) {
            for (std::size_t i = 0; i < rows; ++i) {
                double s = 0;
                for (std::size_t j = 0; j < cols; ++j) s += double(x[t * cols + j]) * dense_teacher[i * cols + j];
                y[t * rows + i] = float(s);
            }
        }
        return y;
    }
    [[nodiscard]] double mse(const Matrix& m) const {
        const auto ys = outputs(m, x_eval), yt = teacher_outputs(x_eval);
        double sum = 0;
        for (std::size_t e = 0; e < ys.size(); ++e) sum += (double(ys[e]) - yt[e]) * (double(ys[e]) - yt[e]);
        return sum / double(ys.size());
    }
    // Per cent of the flipped bits back at the teacher's value ("-" for the dense teacher).
    [[nodiscard]] std::string recovery(const Matrix& m) const {
        if (boolean_teacher == nullptr) return "-";
        std::size_t same = 0;
        for (const std::size_t e : flipped) {
            same += std::size_t{m.sign(1, e / cols, e % cols) == boolean_teacher->sign(1, e / cols, e % cols)};
        }
        return std::to_string(100.0 * double(same) / double(flipped.size())).substr(0, 5);
    }
};

template <class Policy>
void curve(const Setup& setup, const char* name, Policy policy, std::size_t steps) {
    std::printf(
        "\n**%s** — %s\n\n| step | output MSE | MSE / initial | bits recovered (%%) | flips |\n|---|---|---|---|---|\n",
        setup.title, name);
    BooleanTrainer trainer(setup.student, std::move(policy), ScalarBackend{}, GradientTiling{16, 1});
    std::mt19937_64 rng(seed + 1);
    std::vector<float> dy(batch * rows), dx(batch * cols);
    const double initial = setup.mse(setup.student);
    std::size_t flips = 0;
    for (std::size_t s = 0; s <= steps; ++s) {
        if (s % 10 == 0 || s == 5) {
            const double mse = setup.mse(trainer.matrix());
            std::printf("| %zu | %.4g | %.4f | %s | %zu |\n", s, mse, mse / initial,
                        setup.recovery(trainer.matrix()).c_str(), flips);
        }
        if (s == steps) break;
        const auto x = inputs(rng, setup.mixing);
        const auto ys = outputs(trainer.matrix(), x), yt = setup.teacher_outputs(x);
        for (std::size_t e = 0; e < dy.size(); ++e) dy[e] = (ys[e] - yt[e]) / float(batch);
        flips += trainer
                     .step(MatrixView<const float>(std::span(x), batch, cols),
                           MatrixView<const float>(std::span(dy), batch, rows),
                           MatrixView<float>(std::span(dx), batch, cols), FlipContext{s, 0})
                     .statistics.flips();
    }
}

// The policies with the tests' settings.
void curves(const Setup& setup, std::size_t ei_steps, double bold_eta, std::size_t bold_steps) {
    curve(setup, "expected improvement (eta 1, at most 1 flip per row and step)",
          ExpectedImprovementPolicy({.seed = seed, .eta = 1.0, .max_flip_fraction = 1.0 / cols}), ei_steps);
    const std::string eta = " (eta " + std::to_string(bold_eta).substr(0, 4) + ")";
    curve(setup, ("BOLD, float accumulator" + eta).c_str(), BoldPolicy<float>(setup.student, {.eta = bold_eta}),
          bold_steps);
    curve(setup, ("BOLD, fp16 accumulator" + eta).c_str(), BoldPolicy<half>(setup.student, {.eta = bold_eta}),
          bold_steps);
    curve(setup, ("BOLD, int8 accumulator" + eta).c_str(), BoldPolicy<std::int8_t>(setup.student, {.eta = bold_eta}),
          bold_steps);
}

}  // namespace

int main() {
    std::mt19937_64 rng(seed);
    std::printf("# Teacher–student curves (48 x 256, K = 2, G = 64, batch 64, last kernel trains, no scale step)\n");

    // Multi-Boolean teacher: random signs, alpha_0 ~ U(0.6, 1), alpha_1 ~ U(0.3, 0.6) per group.
    std::vector<std::int8_t> signs(2 * rows * cols);
    std::bernoulli_distribution coin(0.5);
    for (auto& s : signs) s = coin(rng) ? 1 : -1;
    std::vector<float> scales(2 * rows * (cols / 64));
    std::uniform_real_distribution<float> first(0.6f, 1.0f), last(0.3f, 0.6f);
    for (std::size_t e = 0; e < scales.size(); ++e) scales[e] = e < scales.size() / 2 ? first(rng) : last(rng);
    const Matrix teacher = Matrix::from_planes(rows, cols, signs, scales);
    Setup boolean{"multi-Boolean teacher, 10 % of the last kernel's bits flipped",
                  teacher,
                  {},
                  inputs(rng, {}),
                  &teacher,
                  {},
                  {}};
    std::vector<std::size_t> positions(rows * cols);
    for (std::size_t e = 0; e < positions.size(); ++e) positions[e] = e;
    std::shuffle(positions.begin(), positions.end(), rng);
    boolean.flipped.assign(positions.begin(), positions.begin() + std::ptrdiff_t(positions.size() / 10));
    for (const std::size_t e : boolean.flipped) boolean.student.flip(1, e / cols, e % cols);
    curves(boolean, 250, 0.3, 40);

    // Dense teacher, correlated inputs, greedy initialization.
    auto dense = normals(rows * cols, rng);
    auto mixing = normals(4 * cols, rng);
    Setup dense_setup{"dense float teacher, greedy_residual student, rank-4 correlated inputs",
                      greedy_residual<Matrix>(MatrixView<const float>(std::span(dense), rows, cols)),
                      mixing,
                      inputs(rng, mixing),
                      nullptr,
                      dense,
                      {}};
    curves(dense_setup, 100, 0.01, 100);
    return 0;
}
