// Batch-1 matrix-vector products y = W x (one decode step of an LLM) on the layer shapes of a 7B
// model: the multi-Boolean backends against float32 baselines, with the weights L3-resident (hot)
// or streamed from DRAM (cold), and the memory-read roofline they are all bounded by.
// See README.md beside this file for the names, counters and how to read them.
#include "bench_support.hpp"

namespace {

using namespace multibool::bench;
using multibool::MatrixView;

// A vectorized sum: 64 independent float partial sums (four AVX-512 registers) keep the adds
// ahead of any memory system, so the time is that of reading the bytes.
float sum_of(std::span<const float> values) {
    constexpr std::size_t lanes = 64;
    float partial[lanes] = {};
    std::size_t j = 0;
    for (; j + lanes <= values.size(); j += lanes) {
        for (std::size_t l = 0; l < lanes; ++l) partial[l] += values[j + l];
    }
    float sum = 0.0f;
    for (float p : partial) sum += p;
    for (; j < values.size(); ++j) sum += values[j];
    return sum;
}

// The decode roofline: how fast `threads` threads can read a 1 GiB buffer (32 x the L3).
void read_bandwidth(benchmark::State& state, std::size_t threads) {
    static const std::vector<float> buffer((std::size_t{1} << 30) / sizeof(float), 1.0f);
    // One sum per thread; the parts are equal, as the buffer is a multiple of grain x threads.
    constexpr std::size_t grain = 1024;
    std::array<float, kThreadCounts.back()> sums{};
    const double seconds = seconds_per_iteration(state, [&](std::size_t) {
        multibool::parallel_for(threads, buffer.size(), grain, [&](std::size_t begin, std::size_t end) {
            sums[begin / (buffer.size() / threads)] = sum_of(std::span(buffer).subspan(begin, end - begin));
        });
        return sums.data();
    });
    state.counters["GBps"] = double(sizeof(float) * buffer.size()) / seconds / 1e9;
}

std::string gemv_name(std::string_view backend, std::size_t k, Shape shape, std::size_t threads, Mode mode) {
    return case_name("BM_Gemv", backend,
                     {{"K", kernels_field(k)},
                      {"G", group_field(k)},
                      {"m", std::to_string(shape.m)},
                      {"n", std::to_string(shape.n)},
                      {"threads", std::to_string(threads)},
                      {"mode", mode_name(mode)}});
}

// product(weights, x as a 1 x n batch, y as a 1 x m batch) on the float copies.
template <class Product>
void float_case(benchmark::State& state, Shape shape, Mode mode, Product product) {
    const auto& pool = f32_pool(shape);
    const ActivationPool xs(1, shape.n);
    std::vector<float> y(shape.m);
    const MatrixView<float> ys{std::span(y), 1, shape.m};
    const double seconds = seconds_per_iteration(state, [&](std::size_t step) {
        product(pool.at(mode, step).view(), xs.batch(step), ys);
        return y.data();
    });
    report_weights(state, double(pool.bytes_each()), double(shape.m * shape.n), seconds);
}

template <class Adapter, std::size_t K>
void backend_case(benchmark::State& state, Shape shape, std::size_t threads, Mode mode) {
    const auto& pool = backend_pool<Adapter, K>(shape);
    const auto backend = make_backend<typename Adapter::backend_type>(threads);
    const ActivationPool xs(1, shape.n);
    std::vector<float> y(shape.m);
    const double seconds = seconds_per_iteration(state, [&](std::size_t step) {
        backend.gemv(pool.at(mode, step), xs.vector(step), std::span(y));
        return y.data();
    });
    report_weights(state, double(pool.bytes_each()), double(shape.m * shape.n), seconds);
}

void register_all() {
    for (const std::size_t threads : kThreadCounts) {
        add_case("BM_ReadBandwidth/threads:" + std::to_string(threads),
                 [threads](benchmark::State& state) { read_bandwidth(state, threads); });
    }
    for (const Shape shape : kShapes) {
        for (const std::size_t threads : kThreadCounts) {
            for (const Mode mode : kModes) {
                add_case(gemv_name("f32_loop", 0, shape, threads, mode), [=](benchmark::State& state) {
                    float_case(state, shape, mode,
                               [threads](auto w, auto xs, auto ys) { f32_loop(w, xs, ys, threads); });
                });
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
                add_case(gemv_name("openblas_sgemv", 0, shape, threads, mode), [=](benchmark::State& state) {
                    openblas_set_num_threads(int(threads));
                    float_case(state, shape, mode, openblas_sgemv);
                });
#endif
                for_each_backend([&]<class Adapter>(std::string_view name, Scope scope) {
                    if (!in_scope(scope, shape, threads, mode)) return;
                    for_each_k([&]<std::size_t K>() {
                        add_case(gemv_name(name, K, shape, threads, mode), [=](benchmark::State& state) {
                            backend_case<Adapter, K>(state, shape, threads, mode);
                        });
                    });
                });
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) { return run_suite(argc, argv, "0.2", register_all); }
