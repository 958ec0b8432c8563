// multibool-demo: converts every linear matrix of a llama2.c model to K = 1..4 Boolean kernels
// (greedy residual, groups of 64 inputs) and reports the honest bits per weight, the
// reconstruction error, and that the Boolean GEMV agrees with a float GEMV of the same weights.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <multibool/multibool.hpp>

#include "common/assets_path.hpp"
#include "llama/checkpoint.hpp"

namespace {

using multibool::MatrixView;
using multibool::llama::Checkpoint;

constexpr std::size_t group_size = 64;
constexpr std::array<std::size_t, 4> kernel_counts = {1, 2, 3, 4};
// Float sums taken in a different order differ by rounding only; anything larger is a bug.
constexpr double gemv_tolerance = 1e-4;

constexpr std::string_view usage =
    "usage: multibool-demo [--model PATH]\n"
    "  Converts each linear matrix of a llama2.c checkpoint to K = 1..4 Boolean kernels\n"
    "  (greedy residual, G = 64) and prints bits per weight and relative Frobenius error.\n"
    "  --model PATH  checkpoint to read (default: stories260K.bin in $MULTIBOOL_ASSETS,\n"
    "                else in the assets folder configured at build time)\n";

struct Conversion {
    double bits_per_weight = 0;
    std::size_t storage_bytes = 0;
    double relative_error = 0;  // ||W - W_hat||_F / ||W||_F
    double gemv_deviation = 0;  // max_i |y_bool - y_dense| / max_i |y_dense|
};
using Conversions = std::array<Conversion, kernel_counts.size()>;

double max_abs(std::span<const float> values) {
    double m = 0;
    for (float v : values) m = std::max(m, double(std::fabs(v)));
    return m;
}

template <std::size_t K>
Conversion convert(MatrixView<const float> weights, std::span<const float> x) {
    auto matrix = multibool::greedy_residual<multibool::BitPlaneMatrix<K, group_size>>(weights);
    const std::vector<float> dequantized = matrix.dequantize();

    double error = 0, norm = 0;
    for (std::size_t e = 0; e < dequantized.size(); ++e) {
        const double w = weights.data()[e];
        error += (w - dequantized[e]) * (w - dequantized[e]);
        norm += w * w;
    }
    Conversion result{matrix.bits_per_weight(), matrix.storage_bytes(), std::sqrt(error / norm), 0};

    // The Boolean product reads only the packed planes; the dense one multiplies the very same
    // W_hat in float, so the two may differ by rounding only.
    const std::size_t rows = weights.rows();
    const multibool::MultiBoolLinear<K, group_size> boolean_layer(std::move(matrix));
    const multibool::DenseLinear dense_layer(MatrixView<const float>{std::span(dequantized), rows, weights.cols()});
    std::vector<float> y_boolean(rows), y_dense(rows), difference(rows);
    boolean_layer.forward(x, y_boolean);
    dense_layer.forward(x, y_dense);
    for (std::size_t i = 0; i < rows; ++i) difference[i] = y_boolean[i] - y_dense[i];
    result.gemv_deviation = max_abs(difference) / max_abs(y_dense);
    return result;
}

template <std::size_t... I>
Conversions convert_for_each_k(MatrixView<const float> weights, std::span<const float> x, std::index_sequence<I...>) {
    return {convert<kernel_counts[I]>(weights, x)...};
}

using LayerMatrix = MatrixView<const float> (Checkpoint::*)(std::size_t) const;
constexpr std::array<std::pair<const char*, LayerMatrix>, 7> layer_matrices = {{
    {"wq", &Checkpoint::wq},
    {"wk", &Checkpoint::wk},
    {"wv", &Checkpoint::wv},
    {"wo", &Checkpoint::wo},
    {"w1", &Checkpoint::w1},
    {"w2", &Checkpoint::w2},
    {"w3", &Checkpoint::w3},
}};

struct Totals {
    std::size_t weights = 0;
    std::size_t storage_bytes = 0;
    double weighted_error = 0;  // sum over matrices of size * relative error
    double max_gemv_deviation = 0;
};

void print_table_header() {
    std::printf("%-8s %-8s", "matrix", "shape");
    for (std::size_t k : kernel_counts) std::printf(" | K=%zu bpw  rel.err", k);
    std::printf("\n");
}

void run(const std::filesystem::path& model_path) {
    if (!std::filesystem::exists(model_path)) {
        throw std::runtime_error(model_path.string() +
                                 ": not found; pass --model or set MULTIBOOL_ASSETS (the original is "
                                 "stories260K/stories260K.bin in karpathy/tinyllamas on Hugging Face)");
    }
    const Checkpoint checkpoint = multibool::llama::load_checkpoint(model_path);
    const auto& c = checkpoint.config();
    std::printf("%s: dim %zu, hidden %zu, %zu layers, %zu heads (%zu KV), vocab %zu, classifier %s\n",
                model_path.filename().string().c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                c.vocab_size, c.shared_classifier ? "tied" : "untied");
    std::printf("greedy residual, G = %zu, float32 scales; bpw counts planes, row padding and scales\n\n", group_size);
    print_table_header();

    std::mt19937 rng(20260);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::array<Totals, kernel_counts.size()> totals{};
    for (std::size_t layer = 0; layer < c.n_layers; ++layer) {
        for (const auto& [name, accessor] : layer_matrices) {
            const MatrixView<const float> weights = (checkpoint.*accessor)(layer);
            std::vector<float> x(weights.cols());
            for (float& v : x) v = normal(rng);
            const Conversions conversions =
                convert_for_each_k(weights, x, std::make_index_sequence<kernel_counts.size()>{});

            char label[48], shape[48];
            std::snprintf(label, sizeof label, "L%zu.%s", layer, name);
            std::snprintf(shape, sizeof shape, "%zux%zu", weights.rows(), weights.cols());
            std::printf("%-8s %-8s", label, shape);
            const std::size_t size = weights.rows() * weights.cols();
            for (std::size_t k = 0; k < kernel_counts.size(); ++k) {
                const Conversion& conversion = conversions[k];
                std::printf(" | %7.3f %8.4f", conversion.bits_per_weight, conversion.relative_error);
                totals[k].weights += size;
                totals[k].storage_bytes += conversion.storage_bytes;
                totals[k].weighted_error += double(size) * conversion.relative_error;
                totals[k].max_gemv_deviation = std::max(totals[k].max_gemv_deviation, conversion.gemv_deviation);
            }
            std::printf("\n");
        }
    }

    std::printf("all %-13zu", totals[0].weights);
    for (const Totals& t : totals) {
        std::printf(" | %7.3f %8.4f", 8.0 * double(t.storage_bytes) / double(t.weights),
                    t.weighted_error / double(t.weights));
    }
    std::printf(
        "\n(totals: bpw = all bits / all weights; rel.err = mean weighted by matrix size;"
        " float32 = 32 bpw)\n\n");

    std::printf("Boolean GEMV vs DenseLinear on dequantize(), random x, max |y_bool - y_dense| / max |y_dense|:\n");
    bool agrees = true;
    for (std::size_t k = 0; k < kernel_counts.size(); ++k) {
        std::printf("  K=%zu  %.2e\n", kernel_counts[k], totals[k].max_gemv_deviation);
        agrees = agrees && totals[k].max_gemv_deviation <= gemv_tolerance;
    }
    if (!agrees) {
        throw std::runtime_error("Boolean GEMV deviates from the dense product by more than " +
                                 std::to_string(gemv_tolerance));
    }
}

}  // namespace

int main(int argc, char** argv) {
    try {
        std::filesystem::path model_path = multibool::examples::assets_dir() / "stories260K.bin";
        for (int i = 1; i < argc; ++i) {
            const std::string_view arg = argv[i];
            if (arg == "--help" || arg == "-h") {
                std::cout << usage;
                return 0;
            }
            if (arg == "--model") {
                if (i + 1 == argc) throw std::invalid_argument("--model needs a path\n" + std::string(usage));
                model_path = argv[++i];
                continue;
            }
            throw std::invalid_argument("unexpected argument '" + std::string(arg) + "'\n" + std::string(usage));
        }
        run(model_path);
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "multibool-demo: " << e.what() << '\n';
        return 1;
    }
}
