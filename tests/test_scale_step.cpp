#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <multibool/core/binary_io.hpp>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/solvers/output_space_solver.hpp>
#include <multibool/solvers/second_moment.hpp>
#include <multibool/solvers/weight_space_solver.hpp>
#include <multibool/training/adamw.hpp>
#include <multibool/training/bold_policy.hpp>
#include <multibool/training/expected_improvement_policy.hpp>
#include <multibool/training/multibool_backward.hpp>
#include <multibool/training/optimizer_state.hpp>
#include <multibool/training/scale_adamw.hpp>
#include <multibool/training/scale_gradient.hpp>
#include <multibool/training/scale_refresh.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;
using multibool::testing::read_state_from;
using multibool::testing::state_of;

namespace {

using testing::view;

// Every scale as double, in the [kernel][row][group] order of ScaleGradient::data().
template <class Matrix>
std::vector<double> all_scales(const Matrix& m) {
    std::vector<double> out;
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        for (std::size_t i = 0; i < m.rows(); ++i) {
            for (const auto a : m.scales(k, i)) out.push_back(static_cast<double>(a));
        }
    }
    return out;
}

// W_hat in double, row-major.
template <class Matrix>
std::vector<double> dense_weight(const Matrix& m) {
    std::vector<double> w(m.rows() * m.cols(), 0.0);
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t j = 0; j < m.cols(); ++j) {
            for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                w[i * m.cols() + j] += static_cast<double>(m.scale(k, i, j / m.group_size())) * m.sign(k, i, j);
            }
        }
    }
    return w;
}

// Y = X W^T in double (X: T x n, W: rows x n).
std::vector<double> outputs(const std::vector<float>& x, const std::vector<double>& w, std::size_t tokens,
                            std::size_t n, std::size_t rows) {
    std::vector<double> y(tokens * rows, 0.0);
    for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < n; ++j) y[t * rows + i] += double(x[t * n + j]) * w[i * n + j];
        }
    }
    return y;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// The output-space objective sum_t sum_i (y_ti - (W_hat x_t)_i)^2, from the stored scales.
template <class Matrix>
double output_objective(const Matrix& m, const std::vector<float>& x, const std::vector<float>& y, std::size_t tokens) {
    const auto fitted = outputs(x, dense_weight(m), tokens, m.cols(), m.rows());
    double sum = 0.0;
    for (std::size_t e = 0; e < fitted.size(); ++e) sum += std::pow(double(y[e]) - fitted[e], 2);
    return sum;
}

// A random dL/dalpha, formed as the backward pass forms it: from a random Gr.
template <class Matrix>
ScaleGradient<Matrix::kernels> random_gradient(const Matrix& m, std::mt19937_64& rng) {
    ScaleGradient<Matrix::kernels> gradient(m);
    const auto gr = testing::random_floats(m.rows() * m.cols(), rng);
    gradient.accumulate(m, 0, view(gr, m.rows(), m.cols()));
    return gradient;
}

// The scalar AdamW of Loshchilov & Hutter in double, from the value the matrix stores.
struct ReferenceAdamW {
    AdamWOptions options;
    std::vector<double> first, second;
    int t = 0;

    // The unrounded new value of every scale.
    std::vector<double> step(const std::vector<double>& alphas, std::span<const float> gradient) {
        ++t;
        first.resize(alphas.size(), 0.0);
        second.resize(alphas.size(), 0.0);
        std::vector<double> next(alphas.size());
        for (std::size_t e = 0; e < alphas.size(); ++e) {
            const double g = gradient[e];
            first[e] = options.beta1 * first[e] + (1.0 - options.beta1) * g;
            second[e] = options.beta2 * second[e] + (1.0 - options.beta2) * g * g;
            const double m_hat = first[e] / (1.0 - std::pow(double(options.beta1), t));
            const double v_hat = second[e] / (1.0 - std::pow(double(options.beta2), t));
            const double lr = options.learning_rate;
            next[e] =
                alphas[e] - lr * options.weight_decay * alphas[e] - lr * m_hat / (std::sqrt(v_hat) + options.epsilon);
        }
        return next;
    }
};

// The bytes of every scale, in the [kernel][row][group] order: equal iff bit for bit equal.
template <class Matrix>
std::vector<unsigned char> scale_bytes(const Matrix& m) {
    std::vector<unsigned char> out;
    for (std::size_t k = 0; k < Matrix::kernels; ++k) {
        for (std::size_t i = 0; i < m.rows(); ++i) {
            const auto scales = m.scales(k, i);
            const auto* bytes = reinterpret_cast<const unsigned char*>(scales.data());
            out.insert(out.end(), bytes, bytes + scales.size_bytes());
        }
    }
    return out;
}

std::vector<std::uint32_t> float_bits(std::span<const float> values) {
    std::vector<std::uint32_t> out;
    for (const float v : values) out.push_back(std::bit_cast<std::uint32_t>(v));
    return out;
}

}  // namespace

TEST_CASE("AdamW matches a hand-worked step on three parameters", "[training][adamw]") {
    const AdamWOptions options{
        .learning_rate = 0.1f, .beta1 = 0.5f, .beta2 = 0.75f, .epsilon = 1e-3f, .weight_decay = 0.25f};
    AdamW optimizer(3, options);
    REQUIRE(optimizer.parameters() == 3);
    REQUIRE(optimizer.state_bytes() == 3 * 2 * sizeof(float));
    std::vector<float> p = {1.0f, -2.0f, 0.5f};
    const std::vector<float> g1 = {0.5f, -1.0f, 0.0f};
    const std::vector<float> g2 = {-0.25f, 2.0f, 1.0f};
    // In double, from the float options as stored.
    const double lr = options.learning_rate, b1 = options.beta1, b2 = options.beta2, eps = options.epsilon,
                 wd = options.weight_decay;
    std::vector<double> expected(p.begin(), p.end()), m(3, 0.0), v(3, 0.0);
    const auto reference_step = [&](const std::vector<float>& g, int t) {
        for (std::size_t e = 0; e < 3; ++e) {
            m[e] = b1 * m[e] + (1 - b1) * g[e];
            v[e] = b2 * v[e] + (1 - b2) * double(g[e]) * g[e];
            const double m_hat = m[e] / (1 - std::pow(b1, t));
            const double v_hat = v[e] / (1 - std::pow(b2, t));
            expected[e] = expected[e] * (1 - lr * wd) - lr * m_hat / (std::sqrt(v_hat) + eps);
        }
    };
    // Step 1 by hand: m_hat = g, v_hat = g^2, so p <- p (1 - lr wd) - lr g / (|g| + eps).
    optimizer.step(p, g1);
    reference_step(g1, 1);
    const double decay = 1 - lr * wd;
    const std::vector<double> by_hand = {1.0 * decay - lr * 0.5 / (0.5 + eps), -2.0 * decay + lr * 1.0 / (1.0 + eps),
                                         0.5 * decay};
    for (std::size_t e = 0; e < 3; ++e) {
        CAPTURE(e);
        REQUIRE(expected[e] == Approx(by_hand[e]).epsilon(1e-12));
        REQUIRE(double(p[e]) == Approx(by_hand[e]).epsilon(1e-6));
    }
    optimizer.step(p, g2);
    reference_step(g2, 2);
    REQUIRE(optimizer.steps() == 2);
    for (std::size_t e = 0; e < 3; ++e) {
        CAPTURE(e, p[e], expected[e]);
        REQUIRE(std::fabs(double(p[e]) - expected[e]) <= 1e-6 * std::fabs(expected[e]) + 1e-7);
    }
}

TEST_CASE("AdamW refuses bad options, mismatched sizes and non-finite values, changing nothing", "[training][adamw]") {
    REQUIRE_THROWS_WITH(AdamW(3, {.learning_rate = -1.0f}), Catch::Contains("AdamW: need a finite learning_rate"));
    REQUIRE_THROWS_AS(AdamW(3, {.learning_rate = 0.1f, .beta1 = 1.0f}), std::invalid_argument);
    REQUIRE_THROWS_AS(AdamW(3, {.learning_rate = 0.1f, .epsilon = 0.0f}), std::invalid_argument);

    const AdamWOptions options{.learning_rate = 0.05f, .weight_decay = 0.1f};
    AdamW optimizer(3, options);
    std::vector<float> p = {0.25f, -1.5f, 3.0f};
    const auto start = p;
    std::vector<float> g = {0.5f, std::numeric_limits<float>::quiet_NaN(), -0.25f};
    REQUIRE_THROWS_WITH(optimizer.step(p, g), Catch::Contains("parameter 1") && Catch::Contains("nan"));
    g[1] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(optimizer.step(p, g), Catch::Contains("parameter 1") && Catch::Contains("inf"));
    g[1] = 1.0f;
    REQUIRE_THROWS_WITH(optimizer.step(std::span<float>(p).first(2), g),
                        Catch::Contains("3 parameters") && Catch::Contains("got 2"));
    REQUIRE_THROWS_AS(optimizer.step(p, std::span<const float>(g).first(2)), std::invalid_argument);
    // A parameter the step cannot make finite: refused by index, the others untouched too.
    std::vector<float> poisoned = p;
    poisoned[2] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(optimizer.step(poisoned, g), Catch::Contains("new value of parameter 2"));
    REQUIRE(float_bits(poisoned) ==
            float_bits(std::vector<float>{0.25f, -1.5f, std::numeric_limits<float>::infinity()}));
    REQUIRE(float_bits(p) == float_bits(start));
    REQUIRE(optimizer.steps() == 0);

    // The refused steps left the moments untouched: the next step is a fresh optimizer's first.
    AdamW fresh(3, options);
    auto q = p;
    optimizer.step(p, g);
    fresh.step(q, g);
    REQUIRE(float_bits(p) == float_bits(q));
    REQUIRE(float_bits(p) != float_bits(start));
}

TEST_CASE("AdamW's state resumes training bit for bit and refuses another shape", "[training][adamw]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const AdamWOptions options{.learning_rate = 0.03f, .beta1 = 0.8f, .beta2 = 0.95f, .weight_decay = 0.2f};
    const std::size_t n = 11;
    AdamW original(n, options);
    auto p = testing::random_floats(n, rng);
    for (int s = 0; s < 3; ++s) original.step(p, testing::random_floats(n, rng));
    const std::string state = state_of(original);
    REQUIRE(state.size() == 3 * 8 + 2 * n * sizeof(float));

    AdamW restored(n, options);
    read_state_from(restored, state);
    REQUIRE(restored.steps() == 3);
    REQUIRE(state_of(restored) == state);
    auto q = p;
    for (int s = 0; s < 4; ++s) {
        const auto g = testing::random_floats(n, rng);
        original.step(p, g);
        restored.step(q, g);
        REQUIRE(float_bits(p) == float_bits(q));
    }
    REQUIRE(state_of(restored) == state_of(original));

    // Refused before anything changes: the refused optimizer still writes a fresh state.
    AdamW other(n + 1, options);
    const std::string fresh_state = state_of(other);
    REQUIRE_THROWS_AS(read_state_from(other, state), FormatError);
    REQUIRE_THROWS_WITH(read_state_from(other, state),
                        Catch::Contains("AdamW first moment count") && Catch::Contains("expected 12, found 11"));
    REQUIRE(state_of(other) == fresh_state);
    AdamW truncated(n, options);
    const std::string zero_state = state_of(truncated);
    for (const std::size_t keep : {std::size_t{0}, std::size_t{5}, state.size() - 1}) {
        CAPTURE(keep);
        REQUIRE_THROWS_WITH(read_state_from(truncated, state.substr(0, keep)), Catch::Contains("truncated"));
        REQUIRE(state_of(truncated) == zero_state);
    }
    // A NaN first moment (the first float after steps and count).
    std::string corrupt = state;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(corrupt.data() + 16 + 4 * 3, &nan, sizeof nan);
    REQUIRE_THROWS_WITH(read_state_from(truncated, corrupt),
                        Catch::Contains("AdamW first moments") && Catch::Contains("element 3"));
    // A negative second moment.
    corrupt = state;
    const float negative = -1.0f;
    std::memcpy(corrupt.data() + 16 + 4 * n + 8, &negative, sizeof negative);
    REQUIRE_THROWS_WITH(read_state_from(truncated, corrupt),
                        Catch::Contains("AdamW second moments") && Catch::Contains("element 0"));
    REQUIRE(state_of(truncated) == zero_state);
}

TEST_CASE("ScaleAdamW's state resumes training bit for bit and refuses another shape", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const AdamWOptions options{.learning_rate = 0.02f, .beta1 = 0.8f, .beta2 = 0.99f, .weight_decay = 0.1f};
    const auto run = [&]<class Scale>() {
        using Matrix = BitPlaneMatrix<2, 32, Scale, std::uint64_t>;
        auto m = testing::random_matrix<Matrix>(5, 70, rng);  // 3 groups per row
        ScaleAdamW original(m, options);
        for (int s = 0; s < 3; ++s) original.step(m, random_gradient(m, rng));
        const std::string state = state_of(original);

        ScaleAdamW<2> restored(5, 3, options);
        read_state_from(restored, state);
        REQUIRE(restored.steps() == 3);
        auto copy = m;
        for (int s = 0; s < 4; ++s) {
            const auto gradient = random_gradient(m, rng);
            original.step(m, gradient);
            restored.step(copy, gradient);
            REQUIRE(scale_bytes(copy) == scale_bytes(m));
        }
        REQUIRE(state_of(restored) == state_of(original));

        ScaleAdamW<2> other_rows(6, 3, options);
        const std::string fresh_state = state_of(other_rows);
        REQUIRE_THROWS_WITH(read_state_from(other_rows, state),
                            Catch::Contains("ScaleAdamW rows") && Catch::Contains("expected 6, found 5"));
        REQUIRE(state_of(other_rows) == fresh_state);
        ScaleAdamW<2> other_groups(5, 2, options);
        REQUIRE_THROWS_WITH(read_state_from(other_groups, state), Catch::Contains("ScaleAdamW groups_per_row"));
        ScaleAdamW<3> other_kernels(5, 3, options);
        REQUIRE_THROWS_WITH(read_state_from(other_kernels, state), Catch::Contains("ScaleAdamW kernels"));
        ScaleAdamW<2> truncated(5, 3, options);
        const std::string zero_state = state_of(truncated);
        REQUIRE_THROWS_AS(read_state_from(truncated, state.substr(0, state.size() - 3)), FormatError);
        REQUIRE(state_of(truncated) == zero_state);
    };
    run.operator()<float>();
    run.operator()<half>();
}

TEST_CASE("ScaleAdamW follows a scalar AdamW reference, rounded to the scale type", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const AdamWOptions options{
        .learning_rate = 0.02f, .beta1 = 0.8f, .beta2 = 0.99f, .epsilon = 1e-6f, .weight_decay = 0.5f};
    const auto run = [&]<class Scale>() {
        using Matrix = BitPlaneMatrix<2, 32, Scale, std::uint64_t>;
        auto m = testing::random_matrix<Matrix>(5, 70, rng);  // ragged: groups of 32, 32, 6
        ScaleAdamW optimizer(m, options);
        REQUIRE(optimizer.state_bytes() == 2 * sizeof(float) * 2 * 5 * 3);
        ReferenceAdamW reference{options, {}, {}};
        for (int step = 1; step <= 8; ++step) {
            CAPTURE(step);
            const auto gradient = random_gradient(m, rng);
            const auto before = all_scales(m);
            const auto expected = reference.step(before, gradient.data());
            optimizer.step(m, gradient);
            REQUIRE(optimizer.steps() == std::size_t(step));
            const auto after = all_scales(m);
            std::size_t moved = 0;
            for (std::size_t e = 0; e < after.size(); ++e) {
                CAPTURE(e, before[e], expected[e], after[e]);
                if constexpr (std::is_same_v<Scale, float>) {
                    REQUIRE(std::fabs(after[e] - expected[e]) <= 1e-6 * std::fabs(expected[e]) + 1e-8);
                } else {
                    // The stored value is the rounding of the reference (its float moments may put it a
                    // hair to either side of a rounding boundary).
                    const auto rounded = [](double v) { return static_cast<double>(static_cast<Scale>(v)); };
                    REQUIRE((after[e] == rounded(expected[e]) || after[e] == rounded(expected[e] * (1 + 1e-6)) ||
                             after[e] == rounded(expected[e] * (1 - 1e-6))));
                }
                moved += std::size_t{after[e] != before[e]};
            }
            REQUIRE(moved > after.size() / 2);  // the steps are large enough to show in half
        }
    };
    run.operator()<float>();
    run.operator()<half>();
}

TEST_CASE("ScaleAdamW's decoupled weight decay shrinks the scales", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<3, 64>;
    auto m = testing::random_matrix<Matrix>(4, 100, rng);
    const auto start = all_scales(m);
    ScaleAdamW optimizer(m, {.learning_rate = 0.1f, .weight_decay = 0.5f});
    const ScaleGradient<3> zero(m);
    for (int step = 0; step < 3; ++step) optimizer.step(m, zero);
    // With no gradient the moments stay 0 and each step only multiplies by 1 - lr * weight_decay.
    const auto after = all_scales(m);
    for (std::size_t e = 0; e < after.size(); ++e) {
        REQUIRE(after[e] == Approx(start[e] * std::pow(1.0 - 0.1 * 0.5, 3)).epsilon(1e-6));
        REQUIRE(std::fabs(after[e]) < std::fabs(start[e]));
    }
}

TEST_CASE("ScaleAdamW refuses mismatched shapes and non-finite gradients, changing nothing", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<2, 32>;
    auto m = testing::random_matrix<Matrix>(4, 64, rng);
    const auto start = all_scales(m);
    const AdamWOptions options{.learning_rate = 0.01f};
    ScaleAdamW optimizer(m, options);

    auto other = testing::random_matrix<Matrix>(5, 64, rng);
    REQUIRE_THROWS_WITH(optimizer.step(other, ScaleGradient<2>(other)),
                        Catch::Contains("4 rows x 2 groups") && Catch::Contains("5 rows x 2 groups"));
    REQUIRE_THROWS_AS(optimizer.step(m, ScaleGradient<2>(4, 3)), std::invalid_argument);
    REQUIRE_THROWS_AS(ScaleAdamW<2>(4, 2, {.learning_rate = -1.0f}), std::invalid_argument);
    REQUIRE_THROWS_AS(ScaleAdamW<2>(4, 2, {.learning_rate = 0.1f, .beta2 = 1.0f}), std::invalid_argument);

    auto gradient = random_gradient(m, rng);
    std::vector<float> poisoned(4 * 64, 0.0f);
    poisoned[2 * 64 + 40] = std::numeric_limits<float>::quiet_NaN();  // row 2, group 1
    ScaleGradient<2> bad = gradient;
    bad.accumulate(m, 0, view(poisoned, 4, 64));
    REQUIRE_THROWS_WITH(optimizer.step(m, bad), Catch::Contains("row 2, group 1") && Catch::Contains("not a finite"));
    REQUIRE(all_scales(m) == start);
    REQUIRE(optimizer.steps() == 0);

    // The refused steps left the moments untouched too: the next step is a fresh optimizer's first.
    auto fresh = m;
    ScaleAdamW reference(fresh, options);
    optimizer.step(m, gradient);
    reference.step(fresh, gradient);
    REQUIRE(all_scales(m) == all_scales(fresh));
}

TEST_CASE("AdamW on the scales alone fits a teacher with the same bits", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<2, 32>;
    const std::size_t rows = 16, n = 96, tokens = 32;
    const auto teacher = testing::random_matrix<Matrix>(rows, n, rng);
    const auto w_teacher = dense_weight(teacher);
    auto student = teacher;
    std::uniform_real_distribution<double> perturbation(-0.3, 0.3);
    for (std::size_t k = 0; k < 2; ++k) {
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t g = 0; g < student.groups_per_row(); ++g) {
                student.set_scale(k, i, g, float(student.scale(k, i, g) * (1.0 + perturbation(rng))));
            }
        }
    }
    // L = 0.5 sum_t ||(W_hat - T) x_t||^2 on held-out inputs.
    const std::size_t eval_tokens = 256;
    const auto x_eval = testing::random_floats(eval_tokens * n, rng);
    const auto loss = [&](const Matrix& m) {
        const auto w = dense_weight(m);
        std::vector<double> difference(rows * n);
        for (std::size_t e = 0; e < difference.size(); ++e) difference[e] = w[e] - w_teacher[e];
        double sum = 0.0;
        for (const double d : outputs(x_eval, difference, eval_tokens, n, rows)) sum += 0.5 * d * d;
        return sum;
    };
    const double initial = loss(student);
    ScaleAdamW optimizer(student, {.learning_rate = 0.01f});
    ScaleGradient<2> gradient(student);
    std::vector<float> dx(tokens * n);
    for (int step = 0; step < 400; ++step) {
        const auto x = testing::random_floats(tokens * n, rng);
        const auto w = dense_weight(student);
        std::vector<double> difference(rows * n);
        for (std::size_t e = 0; e < difference.size(); ++e) difference[e] = w[e] - w_teacher[e];
        const auto dy = to_float(outputs(x, difference, tokens, n, rows));  // dL/dY = (W_hat - T) x
        gradient.clear();
        backward(ScalarBackend{}, student, view(x, tokens, n), view(dy, tokens, rows), view(dx, tokens, n), gradient,
                 GradientTiling{}, [](std::size_t, MatrixView<const float>) {});
        optimizer.step(student, gradient);
    }
    const double final = loss(student);
    CAPTURE(initial, final);
    REQUIRE(final < initial * 1e-6);  // typically ~1e-9: the bits are right, only scales were off
}

TEST_CASE("refresh_scales_to_outputs recovers a teacher's scales from the teacher's outputs", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const auto run = [&]<class Matrix>(std::size_t n) {
        CAPTURE(Matrix::kernels, Matrix::group_size_parameter, n);
        const std::size_t rows = 6;
        const auto teacher = testing::random_matrix<Matrix>(rows, n, rng);
        // The student has the teacher's bits and unrelated scales.
        auto student = teacher;
        const auto other = testing::random_matrix<Matrix>(rows, n, rng);
        for (std::size_t k = 0; k < Matrix::kernels; ++k) {
            for (std::size_t i = 0; i < rows; ++i) {
                for (std::size_t g = 0; g < student.groups_per_row(); ++g)
                    student.set_scale(k, i, g, other.scale(k, i, g));
            }
        }
        const std::size_t tokens = Matrix::kernels * teacher.groups_per_row() + 4;
        const auto x = testing::random_floats(tokens * n, rng);
        const auto y = to_float(outputs(x, dense_weight(teacher), tokens, n, rows));

        const double before = output_objective(student, x, y, tokens);
        const auto report = refresh_scales_to_outputs(student, view(x, tokens, n), view(y, tokens, rows));
        REQUIRE(report.fallbacks == 0);
        REQUIRE(report.error_before == Approx(before).epsilon(1e-9));
        REQUIRE(report.error_after < 1e-8 * report.error_before);
        const auto recovered = all_scales(student);
        const auto expected = all_scales(teacher);
        for (std::size_t e = 0; e < expected.size(); ++e) {
            CAPTURE(e);
            REQUIRE(recovered[e] == Approx(expected[e]).epsilon(1e-4).margin(1e-5));
        }
    };
    run.operator()<BitPlaneMatrix<3, 32>>(80);  // groups of 32, 32, 16
    run.operator()<BitPlaneMatrix<2, per_row>>(50);
    run.operator()<BitPlaneMatrix<1, 64>>(128);
}

TEST_CASE("refresh_scales_to_outputs never raises the objective it reports", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const auto run = [&]<class Matrix>(std::size_t tokens) {
        CAPTURE(Matrix::kernels, Matrix::group_size_parameter, tokens);
        const std::size_t rows = 5, n = 70;
        auto m = testing::random_matrix<Matrix>(rows, n, rng);
        // Outputs no multi-Boolean matrix gives exactly, and possibly too few inputs to fix every scale.
        const auto x = testing::random_floats(tokens * n, rng);
        const auto y = testing::random_floats(tokens * rows, rng, 3.0f);
        const auto first = refresh_scales_to_outputs(m, view(x, tokens, n), view(y, tokens, rows));
        REQUIRE(first.error_after <= first.error_before);
        double outputs_squared = 0.0;
        for (const float v : y) outputs_squared += double(v) * v;
        // Relative to the outputs: an under-determined row fits exactly, up to rounding.
        REQUIRE(first.error_after ==
                Approx(output_objective(m, x, y, tokens)).epsilon(1e-9).margin(1e-9 * outputs_squared));
        // Again from its own solution: the same objective, never higher.
        const auto second = refresh_scales_to_outputs(m, view(x, tokens, n), view(y, tokens, rows));
        REQUIRE(second.error_before == first.error_after);
        REQUIRE(second.error_after <= second.error_before);
    };
    run.operator()<BitPlaneMatrix<2, 32>>(40);
    run.operator()<BitPlaneMatrix<2, 32>>(3);  // under-determined: 6 scales per row
    run.operator()<BitPlaneMatrix<3, 32, half, std::uint64_t>>(40);
    run.operator()<BitPlaneMatrix<3, 32, bfloat16, std::uint64_t>>(40);
}

TEST_CASE("refresh_scales_to_outputs equals OutputSpaceSolver for the outputs of a dense matrix",
          "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<2, 32>;
    const std::size_t rows = 4, n = 64, tokens = 40;
    const auto w = testing::random_floats(rows * n, rng);
    const auto x = testing::random_floats(tokens * n, rng);
    const auto y = to_float(outputs(x, std::vector<double>(w.begin(), w.end()), tokens, n, rows));
    auto from_outputs = testing::random_matrix<Matrix>(rows, n, rng);
    auto from_solver = from_outputs;

    refresh_scales_to_outputs(from_outputs, view(x, tokens, n), view(y, tokens, rows));
    // Same minimiser: ||Y - X W_hat^T||^2 = T (w - w_hat)^T H (w - w_hat) row by row, H = X^T X / T.
    SecondMoment h(n);
    h.accumulate(view(x, tokens, n));
    const auto report = refresh_scales_to_teacher(from_solver, view(w, rows, n), OutputSpaceSolver(h));
    REQUIRE(report.error_after <= report.error_before);
    const auto a = all_scales(from_outputs);
    const auto b = all_scales(from_solver);
    for (std::size_t e = 0; e < a.size(); ++e) {
        CAPTURE(e);
        REQUIRE(a[e] == Approx(b[e]).epsilon(1e-4).margin(1e-5));
    }
}

TEST_CASE("refresh_scales_to_teacher is the solver's own solve", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<3, 32>;
    const std::size_t rows = 6, n = 80;
    const auto teacher = testing::random_floats(rows * n, rng);
    auto refreshed = testing::random_matrix<Matrix>(rows, n, rng);
    auto solved = refreshed;
    const auto report = refresh_scales_to_teacher(refreshed, view(teacher, rows, n), WeightSpaceSolver{});
    const auto direct = WeightSpaceSolver{}.solve(solved, view(teacher, rows, n));
    REQUIRE(report.error_before == direct.error_before);
    REQUIRE(report.error_after == direct.error_after);
    REQUIRE(report.error_after < report.error_before);
    REQUIRE(all_scales(refreshed) == all_scales(solved));
}

TEST_CASE("refresh_scales_to_outputs refuses mismatched or non-finite inputs, changing nothing", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    using Matrix = BitPlaneMatrix<2, 32>;
    auto m = testing::random_matrix<Matrix>(4, 64, rng);
    const auto start = all_scales(m);
    auto x = testing::random_floats(10 * 64, rng);
    const auto y = testing::random_floats(10 * 4, rng);
    REQUIRE_THROWS_WITH(refresh_scales_to_outputs(m, view(x, 10, 64), view(y, 8, 5)), Catch::Contains("same T"));
    REQUIRE_THROWS_AS(refresh_scales_to_outputs(m, view(x, 20, 32), view(y, 10, 4)), std::invalid_argument);
    x[3 * 64 + 7] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(refresh_scales_to_outputs(m, view(x, 10, 64), view(y, 10, 4)),
                        Catch::Contains("x at row 3 col 7"));
    REQUIRE(all_scales(m) == start);
}

TEST_CASE("The optimizer-state report: far below latent-weight training", "[training][scales]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    constexpr std::size_t K = 3, G = 32;
    const std::size_t rows = 8, n = 128, weights = rows * n;
    const auto m = testing::random_matrix<BitPlaneMatrix<K, G>>(rows, n, rng);
    const ScaleAdamW adamw(m, {.learning_rate = 0.01f});
    // Two float moments per scale: 8 K / G bytes per weight.
    REQUIRE(adamw.state_bytes() == 8 * K * rows * (n / G));

    const auto expected_improvement = optimizer_state(ExpectedImprovementPolicy{}, 0, weights);
    REQUIRE(expected_improvement.flip_state_bytes_per_weight == 0.0);
    REQUIRE(expected_improvement.total_bytes_per_weight == 0.0);

    const auto with_adamw = optimizer_state(ExpectedImprovementPolicy{}, adamw.state_bytes(), weights);
    REQUIRE(with_adamw.scale_state_bytes_per_weight == Approx(8.0 * K / G));

    // BOLD trains only the last kernel by default: its accumulator per trainable bit.
    const auto bold_float = optimizer_state(BoldPolicy<float>(m), adamw.state_bytes(), weights);
    const auto bold_half = optimizer_state(BoldPolicy<half>(m), adamw.state_bytes(), weights);
    const auto bold_int8 = optimizer_state(BoldPolicy<std::int8_t>(m), adamw.state_bytes(), weights);
    REQUIRE(bold_float.flip_state_bytes_per_weight == Approx(4.0));
    REQUIRE(bold_half.flip_state_bytes_per_weight == Approx(2.0));
    REQUIRE(bold_int8.flip_state_bytes_per_weight == Approx(1.0 + 4.0 / n));
    REQUIRE(bold_float.total_bytes_per_weight == Approx(4.0 + 8.0 * K / G));
    for (const auto& report : {expected_improvement, with_adamw, bold_float, bold_half, bold_int8}) {
        REQUIRE(report.total_bytes_per_weight ==
                Approx(report.flip_state_bytes_per_weight + report.scale_state_bytes_per_weight));
        REQUIRE(report.fraction_of_latent() <= 0.4);
    }
    // Every kernel training under float BOLD reaches latent-weight training's 12 bytes: why the
    // recipe's last-kernel default and the compact accumulators matter.
    const auto bold_all = optimizer_state(BoldPolicy<float>(m, {.trainable = TrainableKernels::all()}), 0, weights);
    REQUIRE(bold_all.flip_state_bytes_per_weight == Approx(4.0 * K));
    REQUIRE(optimizer_state(ExpectedImprovementPolicy{}, 0, 0).total_bytes_per_weight == 0.0);

    const std::vector<NamedOptimizerState> entries{{"expected improvement + closed form", expected_improvement},
                                                   {"BOLD int8 + AdamW", bold_int8}};
    const auto table = optimizer_state_table(entries);
    CAPTURE(table);
    REQUIRE(std::count(table.begin(), table.end(), '\n') == 3);
    REQUIRE(table.find("BOLD int8 + AdamW") != std::string::npos);
    REQUIRE(table.find("12.00") != std::string::npos);
}

// A stored v = 0 beside m != 0 looks like damage, but a real run writes it: a gradient of 1e-30
// has a square that float cannot hold (1e-60), while 0.1 x 1e-30 is a normal float. Refusing it
// would make such a run's checkpoint unresumable, so the reader accepts it, and the step it
// resumes to is the uninterrupted one.
TEST_CASE("AdamW state with v = 0 and m != 0 comes from tiny gradients and resumes", "[training][adamw]") {
    const AdamWOptions options{.learning_rate = 0.01f};
    AdamW original(1, options);
    std::vector<float> p{0.5f};
    original.step(p, std::vector<float>{1e-30f});
    const std::string state = state_of(original);
    float m = 0, v = 0;
    std::memcpy(&m, state.data() + 16, sizeof m);
    std::memcpy(&v, state.data() + 16 + 4 + 8, sizeof v);
    REQUIRE(m != 0.0f);
    REQUIRE(v == 0.0f);
    AdamW restored(1, options);
    read_state_from(restored, state);
    std::vector<float> q = p;
    original.step(p, std::vector<float>{0.25f});
    restored.step(q, std::vector<float>{0.25f});
    REQUIRE(float_bits(p) == float_bits(q));
    REQUIRE(std::isfinite(q[0]));
}
