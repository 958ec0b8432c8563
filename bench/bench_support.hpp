#pragma once
// What the benchmark suites share: case names, random data, weight pools that make products read
// their weights from DRAM (cold) or from cache (hot), the float32 baselines, the list of backends
// and the timing loop. See README.md beside this file for what the cases mean.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <multibool/backends/prepacking_backend.hpp>
#include <multibool/backends/thread_pool.hpp>
#include <multibool/multibool.hpp>
#if MULTIBOOL_HAS_HIGHWAY
#include <hwy/highway.h>
#include <multibool/backends/highway_backend.hpp>
// The table-lookup backend needs a SIMD target with byte shuffles (as in default_backend.hpp).
#define MULTIBOOL_BENCH_HAS_HIGHWAY_LUT (HWY_STATIC_TARGET != HWY_SCALAR && HWY_STATIC_TARGET != HWY_EMU128)
#if MULTIBOOL_BENCH_HAS_HIGHWAY_LUT
#include <multibool/backends/highway_lookup_backend.hpp>
#endif
#endif
#if MULTIBOOL_HAS_XSIMD
#include <multibool/backends/xsimd_backend.hpp>
#endif
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
#include <cblas.h>
#endif

namespace multibool::bench {

// The deployment format the issue asks for: G = 128, 64-bit words, fp16 scales (K = 3: 3.375 bpw).
inline constexpr std::size_t kGroup = 128;
template <std::size_t K>
using Matrix = BitPlaneMatrix<K, kGroup, half, std::uint64_t>;
inline constexpr std::size_t kMaxKernels = 3;

inline constexpr std::size_t kL3Bytes = std::size_t{32} << 20;
// A cold pool holds at least four times the L3: between two reads of the same bytes, 128 MiB of
// other weights are read, which pushes them out of every cache level, so each product streams its
// weights from DRAM.
inline constexpr std::size_t kColdBytes = 4 * kL3Bytes;

struct Shape {
    std::size_t m;  // rows = outputs
    std::size_t n;  // columns = inputs
    auto operator<=>(const Shape&) const = default;
};
// A 7B model's square projections (q, k, v, o), its MLP up/gate projections and its down projection.
inline constexpr std::array<Shape, 3> kShapes{{{4096, 4096}, {11008, 4096}, {4096, 11008}}};
inline constexpr std::array<std::size_t, 2> kThreadCounts{1, 2};

enum class Mode { hot, cold };
inline constexpr std::array<Mode, 2> kModes{Mode::hot, Mode::cold};

// `name/key:value/...`; a field with an empty value is left out (the float baselines have no K, G).
inline std::string case_name(std::string_view family, std::string_view backend,
                             std::initializer_list<std::pair<std::string_view, std::string>> fields) {
    std::string name(family);
    name.append("/").append(backend);
    for (const auto& [key, value] : fields) {
        if (!value.empty()) name.append("/").append(key).append(":").append(value);
    }
    return name;
}
inline std::string mode_name(Mode mode) { return mode == Mode::hot ? "hot" : "cold"; }
inline std::string kernels_field(std::size_t k) { return k == 0 ? "" : std::to_string(k); }
inline std::string group_field(std::size_t k) { return k == 0 ? "" : std::to_string(kGroup); }

// Uniform values in (-1, 1), never exactly zero ((2u + 1) / 2^24 - 1 with an odd numerator).
// A splitmix64 stream rather than <random>: a 7B block needs 200 M values, which <random>'s normal
// distribution takes seconds to draw, and the kernels' speed does not depend on the distribution.
inline std::vector<float> random_floats(std::size_t count, std::uint64_t seed) {
    std::vector<float> values(count);
    std::uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
    for (float& v : values) {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        v = float(2 * (z >> 40) + 1) * 0x1p-24f - 1.0f;
    }
    return values;
}

// The most recent value made at one call site (each caller's Make is its own lambda type), with
// the key it was made for. Cases run in registration order, shape by shape, so the cases that
// share data (a shape's weights, its quantized matrices, a pool) find it here, and memory holds
// one shape's data per call site rather than every shape's.
template <class T, class Key, class Make>
T& latest(const Key& key, Make&& make) {
    static std::optional<Key> held_key;
    static std::optional<T> value;
    if (!value || *held_key != key) {
        value.reset();  // free the old value before making the new one
        value.emplace(make());
        held_key = key;
    }
    return *value;
}

// Row-major float weights; the same values are quantized for every backend and K.
inline const std::vector<float>& float_weights(Shape shape) {
    return latest<std::vector<float>>(shape,
                                      [&] { return random_floats(shape.m * shape.n, shape.m * 7919 + shape.n); });
}

template <std::size_t K>
const Matrix<K>& quantized(Shape shape) {
    return latest<Matrix<K>>(shape, [&] {
        return greedy_residual<Matrix<K>>(MatrixView<const float>(std::span(float_weights(shape)), shape.m, shape.n));
    });
}

// How many copies of bytes_each bytes a cold rotation needs: kColdBytes in total. One copy of at
// least kColdBytes is cold by itself: reading it through evicts its beginning before the next read.
inline std::size_t cold_copies(std::size_t bytes_each) {
    return std::max<std::size_t>(1, (kColdBytes + bytes_each - 1) / bytes_each);
}

// Copies of one weight object. Hot products reuse copy 0 (cache-resident when it fits in the L3);
// cold products cycle through all copies.
template <class T>
class WeightPool {
public:
    // make() returns one copy; bytes_of(copy) is what one product reads from it.
    template <class Make, class BytesOf>
    WeightPool(Make make, BytesOf bytes_of) {
        copies_.push_back(make());
        bytes_each_ = bytes_of(copies_.front());
        const std::size_t count = cold_copies(bytes_each_);
        copies_.reserve(count);
        while (copies_.size() < count) copies_.push_back(make());
    }
    [[nodiscard]] const T& at(Mode mode, std::size_t step) const {
        return mode == Mode::hot ? copies_.front() : copies_[step % copies_.size()];
    }
    // Bytes one product reads from this weight object.
    [[nodiscard]] std::size_t bytes_each() const noexcept { return bytes_each_; }

private:
    std::vector<T> copies_;
    std::size_t bytes_each_ = 0;
};

// Fresh random activations: a few batches of tokens x n, rotated so that consecutive products
// never see the same input.
class ActivationPool {
public:
    static constexpr std::size_t count = 4;
    ActivationPool(std::size_t tokens, std::size_t n) : tokens_(tokens), n_(n) {
        for (std::size_t b = 0; b < count; ++b) batches_.push_back(random_floats(tokens * n, 104729 * (b + 1) + n));
    }
    [[nodiscard]] MatrixView<const float> batch(std::size_t step) const {
        return {std::span<const float>(batches_[step % count]), tokens_, n_};
    }
    [[nodiscard]] std::span<const float> vector(std::size_t step) const { return batch(step).row(0); }

private:
    std::size_t tokens_;
    std::size_t n_;
    std::vector<std::vector<float>> batches_;
};

// ---- float32 baselines --------------------------------------------------------------------------

struct F32Matrix {
    Shape shape;
    std::vector<float> values;  // row-major m x n
    [[nodiscard]] MatrixView<const float> view() const { return {std::span(values), shape.m, shape.n}; }
    [[nodiscard]] std::size_t bytes() const noexcept { return sizeof(float) * values.size(); }
};

inline const WeightPool<F32Matrix>& f32_pool(Shape shape) {
    return latest<WeightPool<F32Matrix>>(shape, [&] {
        return WeightPool<F32Matrix>(
            [&] {
                return F32Matrix{shape, float_weights(shape)};
            },
            [](const F32Matrix& w) { return w.bytes(); });
    });
}

namespace detail {

// Y[t0 + u, i0 + r] = <X row t0 + u, W row i0 + r> for an R x T register tile. Each of the R * T
// dot products keeps 16 independent partial sums (one AVX-512 register, or several narrower ones):
// no reassociation is needed, so the compiler vectorizes this without -ffast-math.
template <std::size_t R, std::size_t T>
void f32_tile(MatrixView<const float> w, std::size_t i0, MatrixView<const float> xs, std::size_t t0,
              MatrixView<float> ys) {
    constexpr std::size_t lanes = 16;
    const std::size_t n = w.cols();
    std::array<const float*, R> wr;
    std::array<const float*, T> xr;
    for (std::size_t r = 0; r < R; ++r) wr[r] = w.row(i0 + r).data();
    for (std::size_t u = 0; u < T; ++u) xr[u] = xs.row(t0 + u).data();
    float acc[R][T][lanes] = {};
    std::size_t j = 0;
    for (; j + lanes <= n; j += lanes) {
        // Without the unrolling g++ 12 vectorizes across the tile instead of along the lanes
        // (broadcast loads, 4x slower).
#pragma GCC unroll 8
        for (std::size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
            for (std::size_t u = 0; u < T; ++u) {
                for (std::size_t l = 0; l < lanes; ++l)
                    acc[r][u][l] = std::fma(wr[r][j + l], xr[u][j + l], acc[r][u][l]);
            }
        }
    }
    for (std::size_t r = 0; r < R; ++r) {
        for (std::size_t u = 0; u < T; ++u) {
            float sum = 0.0f;
            for (float partial : acc[r][u]) sum += partial;
            for (std::size_t jj = j; jj < n; ++jj) sum = std::fma(wr[r][jj], xr[u][jj], sum);
            ys(t0 + u, i0 + r) = sum;
        }
    }
}

// Rows [i0, i0 + R) of every token: R x T tiles, then single tokens for the remainder.
template <std::size_t R, std::size_t T>
void f32_row_block(MatrixView<const float> w, std::size_t i0, MatrixView<const float> xs, MatrixView<float> ys) {
    std::size_t t = 0;
    for (; t + T <= xs.rows(); t += T) f32_tile<R, T>(w, i0, xs, t, ys);
    for (; t < xs.rows(); ++t) f32_tile<R, 1>(w, i0, xs, t, ys);
}

// Rows [begin, end) of every token. Rows are the outer loop: a block of R weight rows stays in
// L1/L2 while every token passes over it, so the weights are read from memory once per product.
template <std::size_t R, std::size_t T>
void f32_rows(MatrixView<const float> w, MatrixView<const float> xs, MatrixView<float> ys, std::size_t begin,
              std::size_t end) {
    std::size_t i = begin;
    for (; i + R <= end; i += R) f32_row_block<R, T>(w, i, xs, ys);
    for (; i < end; ++i) f32_row_block<1, T>(w, i, xs, ys);
}

}  // namespace detail

// The f32_loop baseline, Y = X Wᵀ (one row of X and Y per token): a plain vectorizable loop, the
// rows split over `threads` threads of the library's pool. One token reads 8 rows at a time
// (8 independent sums hide the FMA latency); several tokens use 4 x 4 tiles, so each weight
// and activation load feeds 4 FMAs.
inline void f32_loop(MatrixView<const float> w, MatrixView<const float> xs, MatrixView<float> ys, std::size_t threads) {
    constexpr std::size_t grain = 8;
    parallel_for(threads, w.rows(), grain, [&](std::size_t begin, std::size_t end) {
        if (xs.rows() == 1) {
            detail::f32_rows<8, 1>(w, xs, ys, begin, end);
        } else {
            detail::f32_rows<4, 4>(w, xs, ys, begin, end);
        }
    });
}

#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
// OpenBLAS runs with its own threads (openblas_set_num_threads), set by each case.
inline void openblas_sgemv(MatrixView<const float> w, MatrixView<const float> xs, MatrixView<float> ys) {
    const auto n = static_cast<int>(w.cols());
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(w.rows()), n, 1.0f, w.data().data(), n, xs.data().data(),
                1, 0.0f, ys.data().data(), 1);
}
inline void openblas_sgemm(MatrixView<const float> w, MatrixView<const float> xs, MatrixView<float> ys) {
    const auto m = static_cast<int>(w.rows());
    const auto n = static_cast<int>(w.cols());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(xs.rows()), m, n, 1.0f, xs.data().data(), n,
                w.data().data(), n, 0.0f, ys.data().data(), m);
}
#endif

// ---- multi-Boolean backends ---------------------------------------------------------------------

// A backend object for `threads` threads; the scalar reference takes no thread count.
template <class Backend>
Backend make_backend(std::size_t threads) {
    if constexpr (std::is_constructible_v<Backend, std::size_t>) {
        return Backend(threads);
    } else {
        return Backend{};
    }
}

// A linear layer that runs Backend's products on the BitPlaneMatrix as stored, even when the
// backend could prepack it (MultiBoolLinear would then use the packed copy): the block benchmark's
// layer for the unpacked paths.
template <class Backend, class M>
class UnpackedLinear {
public:
    UnpackedLinear() = default;
    UnpackedLinear(M weights, Backend backend) : weights_(std::move(weights)), backend_(std::move(backend)) {}
    [[nodiscard]] std::size_t in_features() const noexcept { return weights_.cols(); }
    [[nodiscard]] std::size_t out_features() const noexcept { return weights_.rows(); }
    void forward(std::span<const float> x, std::span<float> y) const { backend_.gemv(weights_, x, y); }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const { backend_.gemm(weights_, xs, ys); }
    void backward_input(std::span<const float> dy, std::span<float> dx) const {
        backend_.gemv_transposed(weights_, dy, dx);
    }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
        backend_.gemm_transposed(weights_, dys, dxs);
    }

private:
    M weights_;
    Backend backend_;
};

// Backends that multiply the BitPlaneMatrix as stored.
template <class Backend>
struct Unpacked {
    using backend_type = Backend;
    template <std::size_t K>
    using weights_type = Matrix<K>;
    template <std::size_t K>
    using linear_type = UnpackedLinear<Backend, Matrix<K>>;
    template <std::size_t K>
    static Matrix<K> prepare(const Backend&, const Matrix<K>& m) {
        return m;
    }
    template <std::size_t K>
    static std::size_t bytes(const Matrix<K>& m) {
        return m.storage_bytes();
    }
    template <std::size_t K>
    static linear_type<K> make_linear(const Backend& backend, const Matrix<K>& m) {
        return linear_type<K>(m, backend);
    }
};

// PrepackingBackends on their own layout: `backend.pack(matrix)` once, then products on the packed
// copy, whose `bytes()` is what one product streams. Their layer is the library's MultiBoolLinear,
// which keeps and uses such a packed copy.
template <class Backend>
struct Packed {
    using backend_type = Backend;
    template <std::size_t K>
    using weights_type = typename Backend::template packed_type<Matrix<K>>;
    template <std::size_t K>
    using linear_type = MultiBoolLinear<K, kGroup, half, std::uint64_t, Backend>;
    template <std::size_t K>
    static weights_type<K> prepare(const Backend& backend, const Matrix<K>& m) {
        static_assert(PrepackingBackend<Backend, Matrix<K>>);
        return backend.pack(m);
    }
    template <std::size_t K>
    static std::size_t bytes(const weights_type<K>& packed) {
        return packed.bytes();
    }
    template <std::size_t K>
    static linear_type<K> make_linear(const Backend& backend, const Matrix<K>& m) {
        return linear_type<K>(m, backend);
    }
};

// The cold/hot copies of shape's K-kernel matrix in an adapter's layout.
template <class Adapter, std::size_t K>
const auto& backend_pool(Shape shape) {
    using Weights = typename Adapter::template weights_type<K>;
    return latest<WeightPool<Weights>>(shape, [&] {
        const auto backend = make_backend<typename Adapter::backend_type>(1);
        const Matrix<K>& m = quantized<K>(shape);
        return WeightPool<Weights>([&] { return Adapter::template prepare<K>(backend, m); },
                                   [](const Weights& w) { return Adapter::template bytes<K>(w); });
    });
}

// Where a backend is measured: everywhere, or (the slow scalar reference) only on the small
// cases: 4096 x 4096, hot, one thread.
enum class Scope { all, reference };

inline bool in_scope(Scope scope, Shape shape, std::size_t threads, Mode mode) {
    return scope == Scope::all || (shape == Shape{4096, 4096} && threads == 1 && mode == Mode::hot);
}

// Every backend the suites measure, one line each: visit.operator()<Adapter>(name, scope).
template <class Visit>
void for_each_backend(Visit&& visit) {
    visit.template operator()<Unpacked<ScalarBackend>>("scalar", Scope::reference);
#if MULTIBOOL_HAS_HIGHWAY
    visit.template operator()<Unpacked<HighwayBackend>>("highway", Scope::all);
#if MULTIBOOL_BENCH_HAS_HIGHWAY_LUT
    visit.template operator()<Packed<HighwayLookupBackend>>("highway_lut", Scope::all);
#endif
#endif
#if MULTIBOOL_HAS_XSIMD
    visit.template operator()<Unpacked<XsimdBackend>>("xsimd", Scope::all);
#endif
}

template <class RegisterK, std::size_t... Ks>
void for_each_k(RegisterK& register_k, std::index_sequence<Ks...>) {
    (register_k.template operator()<Ks + 1>(), ...);
}

// Calls register_k.operator()<K>() for K = 1 .. kMaxKernels.
template <class RegisterK>
void for_each_k(RegisterK&& register_k) {
    for_each_k(register_k, std::make_index_sequence<kMaxKernels>{});
}

// ---- timing -------------------------------------------------------------------------------------

// Runs product(step) once per iteration and returns the wall-clock seconds per iteration.
// product returns a pointer to what it wrote, marked as observed so that no product is elided. Rates
// are computed from this rather than with Counter::kIsRate: kIsRate divides by the main thread's
// CPU time unless a case calls UseRealTime() (which appends "/real_time" to its name), and when a
// pool worker does part of the work, CPU time is not elapsed time.
template <class Product>
double seconds_per_iteration(benchmark::State& state, Product&& product) {
    std::size_t step = 0;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        benchmark::DoNotOptimize(product(step++));
        benchmark::ClobberMemory();
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count() / double(std::max<benchmark::IterationCount>(state.iterations(), 1));
}

// GBps: weight bytes read per second (planes and scales, or 4 bytes per float weight), in 1e9 B/s;
// bpw: stored bits per weight.
inline void report_weights(benchmark::State& state, double bytes, double weights, double seconds) {
    state.counters["GBps"] = bytes / seconds / 1e9;
    state.counters["bpw"] = 8.0 * bytes / weights;
}

// Microseconds, the unit the peer benchmarks are quoted in.
template <class Fn>
void add_case(const std::string& name, Fn fn) {
    benchmark::RegisterBenchmark(name.c_str(), std::move(fn))->Unit(benchmark::kMicrosecond);
}

// main() of every suite: registers the cases, then runs Google Benchmark with a default minimum
// time per case (a --benchmark_min_time on the command line comes later in argv and wins).
inline int run_suite(int argc, char** argv, const char* default_min_time, const std::function<void()>& register_all) {
    std::string min_time = std::string("--benchmark_min_time=") + default_min_time;
    std::vector<char*> args(argv, argv + argc);
    args.insert(args.begin() + 1, min_time.data());
    args.push_back(nullptr);
    int count = argc + 1;
    register_all();
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

}  // namespace multibool::bench
