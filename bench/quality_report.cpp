// multibool-quality-report: reconstruction quality of the post-training initializers (greedy
// residual, alternating refinement, activation-aware) against round-to-nearest b-bit
// quantization at the same group size, with honest bits per weight (scales and padding counted)
// on every row. Prints Markdown tables. See README.md beside this file.
//
//   multibool-quality-report [--quick] [--section model|random|all]
//
// Section "model": the 35 linear matrices of the shipped stories260K model, calibrated on the
// first 32768 tokens of tinystories-train.txt. Section "random": LLaMA-7B-shaped random
// matrices with heavy tails and outlier input columns, with synthetic calibration inputs.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/assets_path.hpp"
#include "llama/calibration.hpp"
#include "llama/checkpoint.hpp"
#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"
#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/core/half.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/row_column_matrix.hpp"
#include "multibool/solvers/alternating_refinement.hpp"
#include "multibool/solvers/greedy_residual.hpp"
#include "multibool/solvers/output_space_refinement.hpp"
#include "multibool/solvers/round_to_nearest.hpp"
#include "multibool/solvers/row_column_refinement.hpp"
#include "multibool/solvers/second_moment.hpp"
#include "multibool/solvers/svid.hpp"

namespace {

namespace fs = std::filesystem;
using multibool::BitPlaneMatrix;
using multibool::half;
using multibool::MatrixView;
using multibool::RowColumnMatrix;
using multibool::SecondMoment;

constexpr std::size_t kIterations = 10;            // alternating / act-aware / row x column rounds
constexpr std::size_t kCalibrationTokens = 32768;  // model section
constexpr std::array<std::size_t, 3> kRtnBits{2, 3, 4};

template <std::size_t K, std::size_t G>
using GroupMatrix = BitPlaneMatrix<K, G, half, std::uint64_t>;
template <std::size_t K>
using RowColMatrix = RowColumnMatrix<K, half, std::uint64_t>;

// Calls f(std::integral_constant<std::size_t, K>{}) for K = 1..4, and likewise for G.
template <class F>
void for_each_kernel_count(F&& f) {
    f(std::integral_constant<std::size_t, 1>{});
    f(std::integral_constant<std::size_t, 2>{});
    f(std::integral_constant<std::size_t, 3>{});
    f(std::integral_constant<std::size_t, 4>{});
}
template <class F>
void for_each_group_size(F&& f) {
    f(std::integral_constant<std::size_t, 32>{});
    f(std::integral_constant<std::size_t, 64>{});
    f(std::integral_constant<std::size_t, 128>{});
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The metric of the output-space error E||(W - W_hat) x||^2 = sum_i e_i^T H e_i: a dense H
// (n x n, row-major) or a diagonal one. Empty: no output error.
struct OutputMetric {
    std::vector<double> dense;
    std::vector<double> diagonal;

    [[nodiscard]] bool empty() const noexcept { return dense.empty() && diagonal.empty(); }
    // v^T H v.
    [[nodiscard]] double quadratic(std::span<const double> v) const {
        const std::size_t n = v.size();
        double sum = 0.0;
        if (!diagonal.empty()) {
            for (std::size_t j = 0; j < n; ++j) sum += diagonal[j] * v[j] * v[j];
            return sum;
        }
        for (std::size_t a = 0; a < n; ++a) {
            const double* const h = dense.data() + a * n;
            double row = 0.0;
            for (std::size_t b = 0; b < n; ++b) row += h[b] * v[b];
            sum += v[a] * row;
        }
        return sum;
    }
};

OutputMetric dense_metric(const SecondMoment& h) {
    const std::size_t n = h.dimension();
    OutputMetric metric;
    metric.dense.resize(n * n);
    for (std::size_t a = 0; a < n; ++a) {
        for (std::size_t b = 0; b < n; ++b) metric.dense[a * n + b] = h(a, b);
    }
    return metric;
}

// Sums that add up across matrices (size-weighted): squared errors and norms, bytes, weights.
struct Tally {
    double squared_error = 0.0;
    double squared_norm = 0.0;
    double output_error = 0.0;
    double output_norm = 0.0;
    bool has_output = false;
    double bits = 0.0;  // stored bits, scales and padding included
    std::size_t weights = 0;

    // Adds W (rows x cols) against its reconstruction w_hat (row-major, same shape); the stored
    // size is given as bits per weight of the full matrix these rows come from.
    void add(MatrixView<const float> w, std::span<const float> w_hat, double bits_per_weight,
             const OutputMetric& metric) {
        const std::size_t n = w.cols();
        std::vector<double> error(n);
        std::vector<double> original(n);
        for (std::size_t i = 0; i < w.rows(); ++i) {
            for (std::size_t j = 0; j < n; ++j) {
                original[j] = w(i, j);
                error[j] = original[j] - double(w_hat[i * n + j]);
                squared_error += error[j] * error[j];
                squared_norm += original[j] * original[j];
            }
            if (!metric.empty()) {
                output_error += metric.quadratic(error);
                output_norm += metric.quadratic(original);
            }
        }
        has_output = !metric.empty();
        bits += bits_per_weight * double(w.rows() * n);
        weights += w.rows() * n;
    }
    [[nodiscard]] double relative_error() const { return std::sqrt(squared_error / squared_norm); }
    [[nodiscard]] double relative_output_error() const { return std::sqrt(output_error / output_norm); }
    [[nodiscard]] double bits_per_weight() const { return bits / double(weights); }
};

// One printed row.
struct Row {
    std::string set;
    std::string rows;  // evaluated rows (random section only)
    std::string method;
    std::string kb;  // "K=3" or "b=4"
    std::string group;
    Tally tally;
};

std::string format(const char* pattern, double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, pattern, value);
    return buffer;
}

void print_table(const std::vector<Row>& rows, bool with_row_column) {
    std::printf("| matrix set |%s method | K / b | G | bits/weight | rel. Frobenius error | rel. output error |\n",
                with_row_column ? " rows evaluated |" : "");
    std::printf("| --- |%s --- | --- | --- | ---: | ---: | ---: |\n", with_row_column ? " --- |" : "");
    for (const Row& r : rows) {
        const std::string output = r.tally.has_output ? format("%.4f", r.tally.relative_output_error()) : "—";
        std::printf("| %s |%s %s | %s | %s | %s | %s | %s |\n", r.set.c_str(),
                    with_row_column ? (" " + r.rows + " |").c_str() : "", r.method.c_str(), r.kb.c_str(),
                    r.group.c_str(), format("%.3f", r.tally.bits_per_weight()).c_str(),
                    format("%.4f", r.tally.relative_error()).c_str(), output.c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// Section "model": the 35 projections of stories260K.

struct ModelMatrix {
    std::string name;
    MatrixView<const float> w;
    const SecondMoment* h;
    OutputMetric metric;
};

std::string read_text_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void model_section() {
    const auto start = std::chrono::steady_clock::now();
    const fs::path assets = multibool::examples::assets_dir();
    const fs::path model_path = assets / "stories260K.bin";
    const fs::path tokenizer_path = assets / "tok512.bin";
    const fs::path text_path = assets / "tinystories-train.txt";
    std::printf("## Shipped model: the 35 linear matrices of stories260K\n\n");
    for (const fs::path& p : {model_path, tokenizer_path, text_path}) {
        if (!fs::exists(p)) {
            std::printf("**skipped: %s not found** (set MULTIBOOL_ASSETS to the folder holding it)\n\n",
                        p.string().c_str());
            std::fflush(stdout);
            return;
        }
    }
    const auto checkpoint = multibool::llama::load_checkpoint(model_path);
    const auto tokenizer = multibool::llama::load_tokenizer(tokenizer_path);
    const std::vector<int> stream = tokenizer.encode(read_text_file(text_path), false, false);
    const auto statistics = multibool::llama::calibrate(checkpoint, stream, kCalibrationTokens);
    const auto& config = checkpoint.config();

    std::vector<ModelMatrix> matrices;
    std::size_t weights = 0;
    for (std::size_t layer = 0; layer < config.n_layers; ++layer) {
        for (const auto p : multibool::llama::projections) {
            const SecondMoment& h = statistics.of(layer, p);
            const auto w = multibool::llama::checkpoint_projection(checkpoint, layer, p);
            weights += w.rows() * w.cols();
            matrices.push_back(
                {"layer" + std::to_string(layer) + "." + multibool::llama::projection_name(p), w, &h, dense_metric(h)});
        }
    }
    std::printf(
        "%s (%s): %zu matrices, %zu weights; calibration: the float model over the first %zu tokens of %s "
        "(%zu tokens seen). Errors are size-weighted over all matrices: rel. Frobenius = "
        "sqrt(sum ||W - W_hat||^2 / sum ||W||^2), rel. output = sqrt(sum tr((W - W_hat) H (W - W_hat)^T) / "
        "sum tr(W H W^T)) with each projection's calibration H = E[x x^T] (in-sample). Scales are fp16; "
        "bits/weight = 8 * storage_bytes / weights (scales and padding counted; n = 172 for w2 is ragged). "
        "alternating and act-aware run %zu rounds; RTN is asymmetric b-bit with an fp16 (scale, minimum) per "
        "group.\n\n",
        model_path.filename().string().c_str(), model_path.string().c_str(), matrices.size(), weights,
        kCalibrationTokens, text_path.filename().string().c_str(), statistics.tokens(), kIterations);

    const std::string set = "stories260K (35)";
    std::vector<Row> rows;
    for_each_group_size([&](auto g_constant) {
        constexpr std::size_t G = decltype(g_constant)::value;
        const std::string group = std::to_string(G);
        for_each_kernel_count([&](auto k_constant) {
            constexpr std::size_t K = decltype(k_constant)::value;
            using Matrix = GroupMatrix<K, G>;
            const std::string kb = "K=" + std::to_string(K);
            Row greedy{set, "", "greedy", kb, group, {}};
            Row alternating{set, "", "alternating", kb, group, {}};
            Row aware{set, "", "act-aware", kb, group, {}};
            Row refined{set, "", "act-aware + full-H bits (the CLI's act-aware)", kb, group, {}};
            for (const ModelMatrix& m : matrices) {
                const auto a = multibool::greedy_residual<Matrix>(m.w);
                greedy.tally.add(m.w, a.dequantize(), a.bits_per_weight(), m.metric);
                const auto b = multibool::alternating_init<Matrix>(m.w, kIterations);
                alternating.tally.add(m.w, b.dequantize(), b.bits_per_weight(), m.metric);
                auto c = multibool::activation_aware_init<Matrix>(m.w, *m.h, kIterations);
                aware.tally.add(m.w, c.dequantize(), c.bits_per_weight(), m.metric);
                multibool::output_space_refinement(c, m.w, *m.h, kIterations);
                refined.tally.add(m.w, c.dequantize(), c.bits_per_weight(), m.metric);
            }
            rows.push_back(std::move(greedy));
            rows.push_back(std::move(alternating));
            rows.push_back(std::move(aware));
            rows.push_back(std::move(refined));
        });
        for (const std::size_t b : kRtnBits) {
            Row rtn{set, "", "RTN", "b=" + std::to_string(b), group, {}};
            for (const ModelMatrix& m : matrices) {
                const auto q = multibool::round_to_nearest(m.w, b, G);
                rtn.tally.add(m.w, q.dequantize(), q.bits_per_weight(), m.metric);
            }
            rows.push_back(std::move(rtn));
        }
    });
    for_each_kernel_count([&](auto k_constant) {
        constexpr std::size_t K = decltype(k_constant)::value;
        Row row{set, "", "row×column (SVID + refine)", "K=" + std::to_string(K), "row×col", {}};
        for (const ModelMatrix& m : matrices) {
            auto a = multibool::svid_residual<RowColMatrix<K>>(m.w);
            multibool::refine_row_column(a, m.w, kIterations);
            row.tally.add(m.w, a.dequantize(), a.bits_per_weight(), m.metric);
        }
        rows.push_back(std::move(row));
    });
    print_table(rows, false);
    std::printf("_model section: %.1f s_\n\n", seconds_since(start));
    std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// Section "random": LLaMA-7B-shaped matrices with realistic statistics.

constexpr std::uint64_t kSeed = 20260501;
constexpr double kOutlierFraction = 0.005;
constexpr double kOutlierGain = 10.0;
constexpr double kWeightScale = 0.02;     // typical std of a LLaMA-7B projection weight
constexpr double kRowScaleSpread = 0.25;  // rows' scales are 0.02 * exp(0.25 * N(0, 1))

struct Shape {
    std::size_t rows;
    std::size_t cols;
    std::size_t evaluated_rows;  // greedy, alternating, RTN, row x column
    std::size_t aware_rows;      // act-aware (its output-space solve costs ~n^2 per row)
};

// What a layer with `cols` inputs reads: which input channels carry outliers and the empirical
// second moment of the synthetic calibration vectors. Layers of the same width read the same
// stream (in LLaMA, wq and w1 both read the normalized residual), so they share it.
struct InputStream {
    std::vector<double> gains;  // 1, or kOutlierGain on the outlier channels
    SecondMoment calibration;
    std::size_t vectors;
    double seconds;  // to build the second moment

    // The inputs' true second moment, diag(gain^2): the expected output error on fresh inputs.
    [[nodiscard]] OutputMetric population() const {
        OutputMetric metric;
        for (double g : gains) metric.diagonal.push_back(g * g);
        return metric;
    }
    [[nodiscard]] std::size_t outliers() const {
        return std::size_t(std::count_if(gains.begin(), gains.end(), [](double g) { return g != 1.0; }));
    }
};

// The outlier channels are ~0.5% of them, chosen by a seeded shuffle; the calibration vectors
// are Gaussian, x_j ~ N(0, gain_j^2).
InputStream input_stream(std::size_t cols, std::size_t vectors, std::uint64_t seed) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::size_t> order(cols);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    const auto outliers = std::max<std::size_t>(1, std::size_t(std::lround(kOutlierFraction * double(cols))));
    std::vector<double> gains(cols, 1.0);
    for (std::size_t c = 0; c < outliers; ++c) gains[order[c]] = kOutlierGain;

    SecondMoment h(cols);
    std::normal_distribution<double> normal(0.0, 1.0);
    constexpr std::size_t batch = 256;
    std::vector<float> xs(batch * cols);
    for (std::size_t first = 0; first < vectors; first += batch) {
        const std::size_t n = std::min(batch, vectors - first);
        for (std::size_t e = 0; e < n * cols; ++e) xs[e] = float(normal(rng) * gains[e % cols]);
        h.accumulate(MatrixView<const float>(std::span<const float>(xs).first(n * cols), n, cols));
    }
    return {std::move(gains), std::move(h), vectors, seconds_since(start)};
}

// The first `rows` rows of a seeded matrix: row i is 0.02 * exp(0.25 z_i) * t_4 / sqrt(2) per
// element (unit-variance Student-t with 4 degrees of freedom), times 10 on the outlier columns.
// Each row has its own generator, so a prefix of rows is the same whatever `rows` is.
std::vector<float> random_weights(std::size_t rows, std::size_t cols, const std::vector<double>& gains,
                                  std::uint64_t seed) {
    std::vector<float> w(rows * cols);
    for (std::size_t i = 0; i < rows; ++i) {
        std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + i);
        std::normal_distribution<double> normal(0.0, 1.0);
        std::student_t_distribution<double> t4(4.0);
        const double row_scale = kWeightScale * std::exp(kRowScaleSpread * normal(rng)) / std::sqrt(2.0);
        for (std::size_t j = 0; j < cols; ++j) w[i * cols + j] = float(row_scale * t4(rng) * gains[j]);
    }
    return w;
}

std::string shape_name(const Shape& s) { return std::to_string(s.rows) + "×" + std::to_string(s.cols); }
std::string rows_name(std::size_t evaluated, std::size_t total) {
    return evaluated == total ? "all " + std::to_string(total) : "first " + std::to_string(evaluated);
}

// Seconds spent per method, for the timing line under each table.
struct Stopwatch {
    std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
    double lap() {
        const auto now = std::chrono::steady_clock::now();
        const double s = std::chrono::duration<double>(now - last).count();
        last = now;
        return s;
    }
};

void random_shape(const Shape& shape, const InputStream& input, std::uint64_t seed) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<float> data = random_weights(shape.evaluated_rows, shape.cols, input.gains, seed);
    const MatrixView<const float> w(std::span<const float>(data), shape.evaluated_rows, shape.cols);
    const MatrixView<const float> w_aware(std::span<const float>(data).first(shape.aware_rows * shape.cols),
                                          shape.aware_rows, shape.cols);
    const OutputMetric population = input.population();
    const std::string set = shape_name(shape);
    const std::string rows_all = rows_name(shape.evaluated_rows, shape.rows);
    const std::string rows_aware = rows_name(shape.aware_rows, shape.rows);
    std::printf("### %s\n\n", set.c_str());
    std::printf("%zu outlier input columns; act-aware calibrated on %zu synthetic vectors.\n\n", input.outliers(),
                input.vectors);
    std::fflush(stdout);

    std::vector<Row> rows;
    double greedy_seconds = 0.0;
    double alternating_seconds = 0.0;
    double aware_seconds = 0.0;
    double rtn_seconds = 0.0;
    double row_column_seconds = 0.0;
    Stopwatch clock;
    for_each_group_size([&](auto g_constant) {
        constexpr std::size_t G = decltype(g_constant)::value;
        const std::string group = std::to_string(G);
        for_each_kernel_count([&](auto k_constant) {
            constexpr std::size_t K = decltype(k_constant)::value;
            using Matrix = GroupMatrix<K, G>;
            const std::string kb = "K=" + std::to_string(K);
            // Every row of a group-scale matrix is stored alike, so the evaluated rows' bits per
            // weight are the whole matrix's.
            clock.lap();
            Row greedy{set, rows_all, "greedy", kb, group, {}};
            const auto a = multibool::greedy_residual<Matrix>(w);
            greedy.tally.add(w, a.dequantize(), a.bits_per_weight(), population);
            rows.push_back(std::move(greedy));
            greedy_seconds += clock.lap();

            Row alternating{set, rows_all, "alternating", kb, group, {}};
            const auto b = multibool::alternating_init<Matrix>(w, kIterations);
            const std::vector<float> b_dense = b.dequantize();
            alternating.tally.add(w, b_dense, b.bits_per_weight(), population);
            rows.push_back(std::move(alternating));
            alternating_seconds += clock.lap();

            Row aware{set, rows_aware, "act-aware", kb, group, {}};
            const auto c = multibool::activation_aware_init<Matrix>(w_aware, input.calibration, kIterations);
            aware.tally.add(w_aware, c.dequantize(), c.bits_per_weight(), population);
            rows.push_back(std::move(aware));
            if (shape.aware_rows != shape.evaluated_rows) {
                // Alternating again on act-aware's rows, for a like-for-like comparison.
                Row same_rows{set, rows_aware, "alternating", kb, group, {}};
                same_rows.tally.add(w_aware, std::span<const float>(b_dense).first(shape.aware_rows * shape.cols),
                                    b.bits_per_weight(), population);
                rows.push_back(std::move(same_rows));
            }
            aware_seconds += clock.lap();
        });
        for (const std::size_t bits : kRtnBits) {
            Row rtn{set, rows_all, "RTN", "b=" + std::to_string(bits), group, {}};
            const auto q = multibool::round_to_nearest(w, bits, G);
            rtn.tally.add(w, q.dequantize(), q.bits_per_weight(), population);
            rows.push_back(std::move(rtn));
        }
        rtn_seconds += clock.lap();
    });
    for_each_kernel_count([&](auto k_constant) {
        constexpr std::size_t K = decltype(k_constant)::value;
        Row row{set, rows_all, "row×column (SVID + refine)", "K=" + std::to_string(K), "row×col", {}};
        auto a = multibool::svid_residual<RowColMatrix<K>>(w);
        multibool::refine_row_column(a, w, kIterations);
        // Column scales are shared by all rows: count the storage of the whole shape.
        const double bits_per_weight = RowColMatrix<K>(shape.rows, shape.cols).bits_per_weight();
        row.tally.add(w, a.dequantize(), bits_per_weight, population);
        rows.push_back(std::move(row));
        row_column_seconds += clock.lap();
    });
    print_table(rows, true);
    std::printf("_%s: %.1f s (greedy %.1f, alternating %.1f, act-aware %.1f, RTN %.1f, row×column %.1f)_\n\n",
                set.c_str(), seconds_since(start), greedy_seconds, alternating_seconds, aware_seconds, rtn_seconds,
                row_column_seconds);
    std::fflush(stdout);
}

void random_section(bool quick) {
    const auto start = std::chrono::steady_clock::now();
    // LLaMA-7B's attention / square projections, MLP up (w1, w3) and MLP down (w2). The row
    // counts keep the section within about four minutes on one core; see README.md.
    const std::vector<Shape> shapes =
        quick ? std::vector<Shape>{{1024, 1024, 128, 16}, {2752, 1024, 128, 16}, {1024, 2752, 64, 4}}
              : std::vector<Shape>{{4096, 4096, 256, 16}, {11008, 4096, 256, 16}, {4096, 11008, 128, 4}};
    const std::size_t vectors = quick ? 1024 : 2048;
    std::printf("## LLaMA-7B-shaped random matrices%s\n\n", quick ? " (--quick: quarter-size shapes)" : "");
    std::printf(
        "Weights: row i is %.2f * exp(%.2f z_i) times unit-variance Student-t (4 d.o.f.) per element, and "
        "%.1f%% of the input columns (a seeded choice per input width, shared by the shapes of that width) are "
        "outliers x%.0f; seed %llu. Scales are fp16; bits/weight counts the scales and padding of the whole "
        "shape. Rel. output error uses the inputs' true second moment H = diag(gain^2) (N(0, 1) activations, "
        "x%.0f on the same outlier channels): the expected error on fresh inputs, not on the calibration set. "
        "act-aware is fitted to the empirical H of %zu synthetic calibration vectors. To stay within minutes, "
        "only a prefix of each matrix's rows is quantized and evaluated (rows are i.i.d., so a prefix estimates "
        "the whole matrix; see the rows column): act-aware, whose full-H output-space solve costs ~n^2 per row "
        "plus a dense n x n H per call, gets the fewest, and alternating is shown again on those same rows.\n\n",
        kWeightScale, kRowScaleSpread, 100 * kOutlierFraction, kOutlierGain, static_cast<unsigned long long>(kSeed),
        kOutlierGain, vectors);
    std::fflush(stdout);
    std::vector<std::pair<std::size_t, InputStream>> inputs;  // by input width
    for (std::size_t s = 0; s < shapes.size(); ++s) {
        const std::size_t cols = shapes[s].cols;
        auto found = std::find_if(inputs.begin(), inputs.end(), [&](const auto& i) { return i.first == cols; });
        if (found == inputs.end()) {
            inputs.emplace_back(cols, input_stream(cols, vectors, kSeed + cols));
            found = inputs.end() - 1;
            std::printf("_calibration H for %zu inputs (%zu vectors): %.1f s_\n\n", cols, vectors,
                        found->second.seconds);
        }
        random_shape(shapes[s], found->second, kSeed + 1000 * (s + 1));
    }
    std::printf("_random section: %.1f s_\n\n", seconds_since(start));
    std::fflush(stdout);
}

int usage(const char* program) {
    std::fprintf(stderr, "usage: %s [--quick] [--section model|random|all]\n", program);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false;
    std::string section = "all";
    for (int a = 1; a < argc; ++a) {
        const std::string_view arg = argv[a];
        if (arg == "--quick") {
            quick = true;
        } else if (arg == "--section" && a + 1 < argc) {
            section = argv[++a];
        } else if (arg.starts_with("--section=")) {
            section = std::string(arg.substr(10));
        } else {
            return usage(argv[0]);
        }
    }
    if (section != "model" && section != "random" && section != "all") return usage(argv[0]);
    try {
        const auto start = std::chrono::steady_clock::now();
        std::printf("# multibool quality report%s\n\n", quick ? " (--quick)" : "");
        if (section != "random") model_section();
        if (section != "model") random_section(quick);
        std::printf("_total: %.1f s_\n", seconds_since(start));
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "multibool-quality-report: %s\n", e.what());
        return 1;
    }
    return 0;
}
