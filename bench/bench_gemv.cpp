// Batch-1 matrix-vector products (the decode step of an LLM): multi-Boolean backends against
// float32 baselines on the shapes of a 7B model's layers, with weights either L3-resident (hot)
// or streamed from DRAM (cold). See README.md beside this file for names and counters.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <multibool/multibool.hpp>

#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
#include <cblas.h>
#endif

namespace {

using multibool::BitPlaneMatrix;
using multibool::DenseLinear;
using multibool::MatrixView;

constexpr std::size_t kGroup = 128;
constexpr std::size_t kMaxKernels = 3;
// Three times the 32 MiB L3: rotating through this much weight data makes every product read DRAM.
constexpr std::size_t kColdBytes = 3 * (std::size_t{32} << 20);

template <std::size_t K>
using Matrix = BitPlaneMatrix<K, kGroup>;

struct Shape {
    std::size_t m;  // rows = outputs
    std::size_t n;  // columns = inputs
    auto operator<=>(const Shape&) const = default;
};
// A 7B model's attention/square projection, its MLP up projection and its MLP down projection.
constexpr std::array<Shape, 3> kShapes{{{4096, 4096}, {11008, 4096}, {4096, 11008}}};

enum class Mode { hot, cold };
constexpr std::array<Mode, 2> kModes{Mode::hot, Mode::cold};

std::string_view mode_name(Mode mode) { return mode == Mode::hot ? "hot" : "cold"; }

std::string case_name(std::string_view backend, std::string_view params, Shape shape, Mode mode) {
    return "BM_Gemv/" + std::string(backend) + "/" + std::string(params) + "m:" + std::to_string(shape.m) +
           "/n:" + std::to_string(shape.n) + "/threads:1/mode:" + std::string(mode_name(mode));
}

// Bytes one product streams: the whole matrix as stored.
std::size_t weight_bytes(const DenseLinear& dense) {
    return sizeof(float) * dense.out_features() * dense.in_features();
}
template <std::size_t K>
std::size_t weight_bytes(const Matrix<K>& matrix) {
    return matrix.storage_bytes();
}

// Seconds per f32_loop product for each (shape, mode), filled by the baseline cases that run first.
std::map<std::pair<Shape, Mode>, double>& f32_loop_seconds() {
    static std::map<std::pair<Shape, Mode>, double> seconds;
    return seconds;
}

std::vector<float> gaussian(std::size_t count, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> values(count);
    for (auto& v : values) v = dist(rng);
    return values;
}

// The float weights of the shape whose cases are running; cases are registered shape by shape,
// so one matrix at a time is kept and every backend and K quantizes the same weights.
const std::vector<float>& shape_weights(Shape shape) {
    static Shape cached{};
    static std::vector<float> weights;
    if (cached != shape) {
        weights = gaussian(shape.m * shape.n, shape.m * 100003 + shape.n);
        cached = shape;
    }
    return weights;
}

// Enough copies of make()'s result that together they exceed kColdBytes (at least two, so that
// consecutive cold products never reuse a matrix). Kept per type for the current shape only.
template <class T, class Make>
const std::vector<T>& weight_copies(Shape shape, Make make) {
    static Shape cached{};
    static std::vector<T> copies;
    if (cached != shape) {
        copies = {};
        const T first = make(MatrixView<const float>(std::span<const float>(shape_weights(shape)), shape.m, shape.n));
        copies.assign(std::max<std::size_t>(2, kColdBytes / weight_bytes(first) + 1), first);
        cached = shape;
    }
    return copies;
}

// The f32_loop cases record their time for the later cases of the same shape and mode to compare with.
enum class Role { f32_loop, compared };

// Times product(weights, x, y): hot mode reuses the first copy, cold mode cycles through all of
// them; activations cycle through a few fresh random vectors. Reports GBps, bpw and vs_f32_loop
// from the wall-clock seconds per product.
template <class T, class Product>
void run_gemv(benchmark::State& state, Shape shape, Mode mode, Role role, const std::vector<T>& copies,
              Product product) {
    const std::size_t used = mode == Mode::hot ? 1 : copies.size();
    std::array<std::vector<float>, 4> xs;
    for (std::size_t v = 0; v < xs.size(); ++v) xs[v] = gaussian(shape.n, 7919 * v + 1);
    std::vector<float> y(shape.m);

    std::size_t step = 0;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        product(copies[step % used], std::span<const float>(xs[step % xs.size()]), std::span<float>(y));
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
        ++step;
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    const double seconds = elapsed.count() / double(state.iterations());

    const double bytes = double(weight_bytes(copies.front()));
    state.counters["GBps"] = bytes / seconds / 1e9;
    state.counters["bpw"] = 8.0 * bytes / double(shape.m * shape.n);
    // Benchmark calls a case several times while sizing it; the last call is the one reported.
    auto& baseline = f32_loop_seconds();
    if (role == Role::f32_loop) baseline[{shape, mode}] = seconds;
    if (const auto it = baseline.find({shape, mode}); it != baseline.end()) {
        state.counters["vs_f32_loop"] = it->second / seconds;
    }
}

DenseLinear make_dense(MatrixView<const float> weights) { return DenseLinear(weights); }

// Microseconds, the unit the peer benchmarks (PEER-BENCHMARKS.md) are quoted in.
template <class Fn>
void add_case(const std::string& name, Fn fn) {
    benchmark::RegisterBenchmark(name.c_str(), std::move(fn))->Unit(benchmark::kMicrosecond);
}

void register_baselines(Shape shape, Mode mode) {
    add_case(case_name("f32_loop", "", shape, mode), [shape, mode](benchmark::State& state) {
        const auto& copies = weight_copies<DenseLinear>(shape, make_dense);
        run_gemv(state, shape, mode, Role::f32_loop, copies,
                 [](const DenseLinear& w, std::span<const float> x, std::span<float> y) { w.forward(x, y); });
    });
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
    // Shares the f32_loop copies: the same bytes, read by a tuned kernel.
    add_case(case_name("openblas_sgemv", "", shape, mode), [shape, mode](benchmark::State& state) {
        const auto& copies = weight_copies<DenseLinear>(shape, make_dense);
        run_gemv(state, shape, mode, Role::compared, copies,
                 [](const DenseLinear& w, std::span<const float> x, std::span<float> y) {
                     const auto m = static_cast<int>(w.out_features());
                     const auto n = static_cast<int>(w.in_features());
                     cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, w.weights().data().data(), n, x.data(), 1,
                                 0.0f, y.data(), 1);
                 });
    });
#endif
}

template <class Backend, std::size_t K>
void register_multibool(Shape shape) {
    const std::string params = "K:" + std::to_string(K) + "/G:" + std::to_string(kGroup) + "/";
    for (const Mode mode : kModes) {
        add_case(case_name(Backend::name, params, shape, mode), [shape, mode](benchmark::State& state) {
            // Copies of one quantized matrix: only the greedy quantization itself is slow.
            const auto& copies = weight_copies<Matrix<K>>(shape, multibool::greedy_residual<Matrix<K>>);
            run_gemv(state, shape, mode, Role::compared, copies,
                     [](const Matrix<K>& w, std::span<const float> x, std::span<float> y) { Backend{}.gemv(w, x, y); });
        });
    }
}

// Registers K = 1 .. sizeof...(Ks) for one backend.
template <class Backend, std::size_t... Ks>
void register_backend(Shape shape, std::index_sequence<Ks...>) {
    (register_multibool<Backend, Ks + 1>(shape), ...);
}

void register_all() {
    for (const Shape shape : kShapes) {
        for (const Mode mode : kModes) register_baselines(shape, mode);
        register_backend<multibool::ScalarBackend>(shape, std::make_index_sequence<kMaxKernels>{});
    }
}

}  // namespace

int main(int argc, char** argv) {
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
    // Every case is single-threaded; the OPENBLAS_* environment is left as the user set it.
    openblas_set_num_threads(1);
#endif
    // A default minimum time per case that keeps the whole suite under two minutes; a
    // --benchmark_min_time given on the command line comes later in argv and wins.
    std::string default_min_time = "--benchmark_min_time=0.2";
    std::vector<char*> args(argv, argv + argc);
    args.insert(args.begin() + 1, default_min_time.data());
    args.push_back(nullptr);
    int count = argc + 1;

    register_all();
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
