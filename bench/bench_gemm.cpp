// Batched products Y = X Wᵀ (prefill, scoring, training: several tokens share each weight read) on
// the layer shapes of a 7B model: the multi-Boolean backends against float32 baselines, hot and
// cold as in bench_gemv. See README.md beside this file.
#include "bench_support.hpp"

namespace {

using namespace multibool::bench;
using multibool::MatrixView;

constexpr std::array<std::size_t, 4> kTokenCounts{1, 8, 32, 128};
// The scalar reference costs about one gemv per token: beyond this it would dominate the run time.
constexpr std::size_t kScalarMaxTokens = 8;

std::string gemm_name(std::string_view backend, std::size_t k, Shape shape, std::size_t threads, Mode mode,
                      std::size_t tokens) {
    return case_name("BM_Gemm", backend,
                     {{"K", kernels_field(k)},
                      {"G", group_field(k)},
                      {"m", std::to_string(shape.m)},
                      {"n", std::to_string(shape.n)},
                      {"threads", std::to_string(threads)},
                      {"mode", mode_name(mode)},
                      {"t", std::to_string(tokens)}});
}

// Times product(weights, xs, ys) on pool's weights (cold or hot, as mode says) and a pool of token
// batches. Weight bytes are counted once per product: every token of the batch shares one read.
template <class Pool, class Product>
void batch_case(benchmark::State& state, const Pool& pool, Shape shape, Mode mode, std::size_t tokens,
                Product product) {
    const ActivationPool xs(tokens, shape.n);
    std::vector<float> y(tokens * shape.m);
    const MatrixView<float> ys{std::span(y), tokens, shape.m};
    const double seconds = seconds_per_iteration(state, [&](std::size_t step) {
        product(pool.at(mode, step), xs.batch(step), ys);
        return y.data();
    });
    report_weights(state, double(pool.bytes_each()), double(shape.m * shape.n), seconds);
}

template <class Product>
void float_case(benchmark::State& state, Shape shape, Mode mode, std::size_t tokens, Product product) {
    batch_case(state, f32_pool(shape), shape, mode, tokens,
               [&](const auto& w, auto xs, auto ys) { product(w.view(), xs, ys); });
}

template <class Adapter, std::size_t K>
void backend_case(benchmark::State& state, Shape shape, std::size_t threads, Mode mode, std::size_t tokens) {
    const auto backend = make_backend<typename Adapter::backend_type>(threads);
    batch_case(state, backend_pool<Adapter, K>(shape), shape, mode, tokens,
               [&](const auto& w, auto xs, auto ys) { backend.gemm(w, xs, ys); });
}

#if MULTIBOOL_BENCH_HAS_HIGHWAY_LUT
// The packed layout's two batched paths on their own, whatever highway_lut picks for the batch:
// lut_tables (int8 tables, cost per token grows with K) and lut_expansion (levels expanded once
// per tile, int8 dot products).
template <std::size_t K, class Path>
void packed_path_case(benchmark::State& state, Shape shape, std::size_t threads, Mode mode, std::size_t tokens,
                      Path path) {
    batch_case(state, backend_pool<Packed<multibool::HighwayLookupBackend>, K>(shape), shape, mode, tokens,
               [&](const auto& w, auto xs, auto ys) { path(w, xs, ys, threads); });
}

void register_packed_paths(Shape shape, std::size_t threads, Mode mode, std::size_t tokens) {
    if (tokens == 1) return;
    for_each_k([&]<std::size_t K>() {
        add_case(gemm_name("lut_tables", K, shape, threads, mode, tokens), [=](benchmark::State& state) {
            packed_path_case<K>(
                state, shape, threads, mode, tokens,
                [](const auto& m, auto xs, auto ys, std::size_t t) { multibool::table_lookup_gemm(m, xs, ys, t); });
        });
        add_case(gemm_name("lut_expansion", K, shape, threads, mode, tokens), [=](benchmark::State& state) {
            packed_path_case<K>(
                state, shape, threads, mode, tokens,
                [](const auto& m, auto xs, auto ys, std::size_t t) { multibool::level_expansion_gemm(m, xs, ys, t); });
        });
    });
}
#endif

void register_all() {
    for (const Shape shape : kShapes) {
        for (const std::size_t threads : kThreadCounts) {
            for (const Mode mode : kModes) {
                for (const std::size_t tokens : kTokenCounts) {
                    add_case(gemm_name("f32_loop", 0, shape, threads, mode, tokens), [=](benchmark::State& state) {
                        float_case(state, shape, mode, tokens,
                                   [threads](auto w, auto xs, auto ys) { f32_loop(w, xs, ys, threads); });
                    });
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
                    add_case(gemm_name("openblas_sgemm", 0, shape, threads, mode, tokens),
                             [=](benchmark::State& state) {
                                 openblas_set_num_threads(int(threads));
                                 float_case(state, shape, mode, tokens, openblas_sgemm);
                             });
#endif
#if MULTIBOOL_BENCH_HAS_HIGHWAY_LUT
                    register_packed_paths(shape, threads, mode, tokens);
#endif
                    for_each_backend([&]<class Adapter>(std::string_view name, Scope scope) {
                        if (!in_scope(scope, shape, threads, mode)) return;
                        if (scope == Scope::reference && tokens > kScalarMaxTokens) return;
                        for_each_k([&]<std::size_t K>() {
                            add_case(gemm_name(name, K, shape, threads, mode, tokens), [=](benchmark::State& state) {
                                backend_case<Adapter, K>(state, shape, threads, mode, tokens);
                            });
                        });
                    });
                }
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) { return run_suite(argc, argv, "0.1", register_all); }
