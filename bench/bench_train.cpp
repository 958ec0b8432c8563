// bench_train: one Boolean B step of a K = 3 layer (backward + flips) per flip policy and the
// closed-form scale step, beside one dense float32 backward of the same shape. See README.md.
#include "bench_support.hpp"

#include <multibool/solvers/weight_space_solver.hpp>
#include <multibool/training/bold_policy.hpp>
#include <multibool/training/boolean_trainer.hpp>
#include <multibool/training/expected_improvement_policy.hpp>

namespace {

using namespace multibool;
using namespace multibool::bench;

constexpr std::size_t kTokens = 64;
constexpr std::size_t kKernels = 3;
constexpr std::array<Shape, 2> kTrainShapes{{{4096, 4096}, {11008, 4096}}};

#if MULTIBOOL_HAS_HIGHWAY
using TrainBackend = HighwayBackend;  // dX = dY W_hat on the planes as stored, one thread
#else
using TrainBackend = ScalarBackend;
#endif

std::string shape_fields(Shape shape) {
    return "m:" + std::to_string(shape.m) + "/n:" + std::to_string(shape.n) + "/tokens:" + std::to_string(kTokens);
}

// One iteration: trainer.step (dX, dL/dalpha, flips of the last kernel) on 64 tokens, the B step
// that is compared with one dense backward.
template <class Policy>
void flip_step(benchmark::State& state, Shape shape, Policy policy) {
    BooleanTrainer trainer(quantized<kKernels>(shape), std::move(policy), make_backend<TrainBackend>(1),
                           GradientTiling{64, 1});
    const ActivationPool x(kTokens, shape.n), dy(kTokens, shape.m);
    std::vector<float> dx(kTokens * shape.n);
    std::size_t peak = 0;
    const auto step = [&](std::size_t s) {
        peak =
            trainer.step(x.batch(s), dy.batch(s), MatrixView<float>(std::span(dx), kTokens, shape.n), FlipContext{s, 0})
                .peak_extra_bytes;
        return dx.data();
    };
    // The first step is not a steady one (BOLD's beta is 0, the stochastic rule's tau is a guess,
    // and either may flip half the bits): untimed.
    step(0);
    const double seconds = seconds_per_iteration(state, [&](std::size_t s) { return step(s + 1); });
    state.counters["weights_per_s"] = double(shape.m * shape.n) / seconds;
    state.counters["state_bytes_per_weight"] = trainer.policy().state_bytes_per_weight();
    state.counters["peak_extra_bytes"] = double(peak);
}

// The closed-form alpha step a teacher-guided run takes between B steps: WeightSpaceSolver's
// scales for the matrix's bits, to the float weights it was quantized from.
void scale_step(benchmark::State& state, Shape shape) {
    Matrix<kKernels> m = quantized<kKernels>(shape);
    const MatrixView<const float> teacher(std::span(float_weights(shape)), shape.m, shape.n);
    const double seconds = seconds_per_iteration(state, [&](std::size_t) {
        WeightSpaceSolver{}.solve(m, teacher);
        return m.scale_data().data();
    });
    state.counters["weights_per_s"] = double(shape.m * shape.n) / seconds;
}

// dX = dY W (tokens x n) and dW = dY^T X (m x n), the two products of a float layer's backward.
void dense_backward(benchmark::State& state, Shape shape) {
    const std::vector<float>& w = float_weights(shape);
    const ActivationPool x(kTokens, shape.n), dy(kTokens, shape.m);
    std::vector<float> dx(kTokens * shape.n), dw(shape.m * shape.n);
    const auto m = static_cast<int>(shape.m), n = static_cast<int>(shape.n), t = static_cast<int>(kTokens);
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
    openblas_set_num_threads(1);
    state.SetLabel("openblas_sgemm");
#else
    state.SetLabel("f32_loop");
#endif
    const double seconds = seconds_per_iteration(state, [&](std::size_t step) {
        const float* xs = x.batch(step).data().data();
        const float* dys = dy.batch(step).data().data();
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, n, m, 1.0f, dys, m, w.data(), n, 0.0f, dx.data(), n);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, t, 1.0f, dys, m, xs, n, 0.0f, dw.data(), n);
#else
        // Rows of W and dW innermost along n: plain loops the compiler vectorizes.
        std::fill(dx.begin(), dx.end(), 0.0f);
        for (int u = 0; u < t; ++u) {
            for (int i = 0; i < m; ++i) {
                const float c = dys[u * m + i];
                for (int j = 0; j < n; ++j) dx[std::size_t(u) * n + j] += c * w[std::size_t(i) * n + j];
            }
        }
        for (int i = 0; i < m; ++i) {
            float* row = dw.data() + std::size_t(i) * n;
            std::fill_n(row, n, 0.0f);
            for (int u = 0; u < t; ++u) {
                const float c = dys[u * m + i];
                for (int j = 0; j < n; ++j) row[j] += c * xs[std::size_t(u) * n + j];
            }
        }
#endif
        return dw.data();
    });
    state.counters["weights_per_s"] = double(shape.m * shape.n) / seconds;
    // What latent-weight training holds per weight: a float32 weight and two Adam moments.
    state.counters["state_bytes_per_weight"] = 12.0;
    state.counters["peak_extra_bytes"] = double(sizeof(float) * dw.size());  // the dense dW
}

void register_all() {
    for (const Shape shape : kTrainShapes) {
        const std::string fields = "/K:" + std::to_string(kKernels) + "/" + shape_fields(shape);
        add_case("BM_FlipStep/expected_improvement" + fields, [shape](benchmark::State& state) {
            flip_step(state, shape, ExpectedImprovementPolicy({.seed = 1, .eta = 0.01, .initial_tau = 1e-6}));
        });
        add_case("BM_FlipStep/bold_f32" + fields, [shape](benchmark::State& state) {
            flip_step(state, shape, BoldPolicy<float>(quantized<kKernels>(shape)));
        });
        add_case("BM_FlipStep/bold_f16" + fields, [shape](benchmark::State& state) {
            flip_step(state, shape, BoldPolicy<half>(quantized<kKernels>(shape)));
        });
        add_case("BM_FlipStep/bold_i8" + fields, [shape](benchmark::State& state) {
            flip_step(state, shape, BoldPolicy<std::int8_t>(quantized<kKernels>(shape)));
        });
        add_case("BM_ScaleStep/weight_space_solver" + fields,
                 [shape](benchmark::State& state) { scale_step(state, shape); });
        add_case("BM_DenseBackward/" + shape_fields(shape),
                 [shape](benchmark::State& state) { dense_backward(state, shape); });
    }
}

}  // namespace

int main(int argc, char** argv) { return run_suite(argc, argv, "0.1", register_all); }
