// multibool-lookup-accuracy: what the int8 tables of the table-lookup products cost in accuracy
// on the shipped model, as Markdown. For K = 1..3 and G = 64, 128 (greedy residual weights, fp16
// scales) it compares HighwayLookupBackend with the exact-float HighwayBackend on the same weights:
//   - per projection, the relative error of y = W_hat x on the real inputs the float model feeds
//     that projection (the first 1024 tokens of tinystories-train.txt), size-weighted over the 35
//     projections, and the worst projection;
//   - the perplexity of the whole model on tinystories-valid.txt with each backend.
//
//   multibool-lookup-accuracy [--threads N]
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/assets_path.hpp"
#include "llama/checkpoint.hpp"
#include "llama/perplexity.hpp"
#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"
#include "multibool/backends/highway_backend.hpp"
#include "multibool/backends/highway_lookup_backend.hpp"
#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "multibool/nn/multibool_linear.hpp"
#include "multibool/solvers/greedy_residual.hpp"

namespace {

namespace fs = std::filesystem;
namespace llama = multibool::llama;
using multibool::half;
using multibool::MatrixView;

constexpr std::size_t kRecordedTokens = 1024;

std::string read_text_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A float layer that keeps a copy of every input row it reads.
struct InputRecorder {
    multibool::DenseLinear dense;
    std::vector<float>* inputs = nullptr;

    [[nodiscard]] std::size_t in_features() const noexcept { return dense.in_features(); }
    [[nodiscard]] std::size_t out_features() const noexcept { return dense.out_features(); }
    void forward(std::span<const float> x, std::span<float> y) const {
        inputs->insert(inputs->end(), x.begin(), x.end());
        dense.forward(x, y);
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        inputs->insert(inputs->end(), xs.data().begin(), xs.data().end());
        dense.forward(xs, ys);
    }
    void backward_input(std::span<const float> dy, std::span<float> dx) const { dense.backward_input(dy, dx); }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const { dense.backward_input(dys, dxs); }
};

using Key = std::pair<std::size_t, llama::Projection>;

// The inputs each projection reads while the float model runs over `tokens`, in perplexity chunks.
std::map<Key, std::vector<float>> record_inputs(const llama::Checkpoint& checkpoint, std::span<const int> tokens) {
    std::map<Key, std::vector<float>> inputs;
    const auto model = llama::Transformer<InputRecorder>::from_checkpoint(
        checkpoint, [&](MatrixView<const float> w, std::size_t layer, llama::Projection p) {
            return InputRecorder{multibool::DenseLinear(w), &inputs[{layer, p}]};
        });
    llama::Session session(model.config());
    for (std::size_t begin = 0; begin < tokens.size(); begin += llama::perplexity_chunk_tokens) {
        std::vector<int> input{llama::Tokenizer::bos};
        const auto chunk = tokens.subspan(begin, std::min(llama::perplexity_chunk_tokens, tokens.size() - begin));
        input.insert(input.end(), chunk.begin(), chunk.end() - 1);
        model.forward(input, 0, session, llama::Logits::last);
    }
    return inputs;
}

template <std::size_t K, std::size_t G>
void report(const llama::Checkpoint& checkpoint, const std::map<Key, std::vector<float>>& inputs,
            std::span<const int> valid, std::size_t threads) {
    using Matrix = multibool::BitPlaneMatrix<K, G, half, std::uint64_t>;
    using Exact = multibool::MultiBoolLinear<K, G, half, std::uint64_t, multibool::HighwayBackend>;
    using Lookup = multibool::MultiBoolLinear<K, G, half, std::uint64_t, multibool::HighwayLookupBackend>;
    std::map<Key, Matrix> matrices;
    for (std::size_t layer = 0; layer < checkpoint.config().n_layers; ++layer) {
        for (const auto p : llama::projections) {
            matrices.emplace(Key{layer, p},
                             multibool::greedy_residual<Matrix>(llama::checkpoint_projection(checkpoint, layer, p)));
        }
    }
    double squared_error = 0.0, squared_norm = 0.0, worst = 0.0;
    std::string worst_name;
    for (const auto& [key, m] : matrices) {
        const auto& x = inputs.at(key);
        const std::size_t tokens = x.size() / m.cols();
        std::vector<float> exact(tokens * m.rows()), lookup(tokens * m.rows());
        const MatrixView<const float> xs(std::span<const float>(x), tokens, m.cols());
        Exact(m).forward(xs, MatrixView<float>(std::span<float>(exact), tokens, m.rows()));
        Lookup(m).forward(xs, MatrixView<float>(std::span<float>(lookup), tokens, m.rows()));
        double e = 0.0, norm = 0.0;
        for (std::size_t i = 0; i < exact.size(); ++i) {
            e += std::pow(double(lookup[i]) - double(exact[i]), 2);
            norm += std::pow(double(exact[i]), 2);
        }
        squared_error += e;
        squared_norm += norm;
        if (std::sqrt(e / norm) > worst) {
            worst = std::sqrt(e / norm);
            worst_name = "layer" + std::to_string(key.first) + "." + std::string(llama::projection_name(key.second));
        }
    }
    const auto build = [&]<class Linear>(std::type_identity<Linear>) {
        return llama::Transformer<Linear>::from_checkpoint(
            checkpoint, [&](MatrixView<const float>, std::size_t layer, llama::Projection p) {
                return Linear(matrices.at({layer, p}));
            });
    };
    const double exact_ppl = llama::perplexity(build(std::type_identity<Exact>{}), valid, threads).perplexity();
    const double lookup_ppl = llama::perplexity(build(std::type_identity<Lookup>{}), valid, threads).perplexity();
    std::printf("| %zu | %zu | %.2e | %.2e (%s) | %.4f | %.4f | %+.2f %% |\n", K, G,
                std::sqrt(squared_error / squared_norm), worst, worst_name.c_str(), exact_ppl, lookup_ppl,
                100.0 * (lookup_ppl / exact_ppl - 1.0));
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t threads = 2;
    for (int a = 1; a < argc; ++a) {
        if (std::string_view(argv[a]) == "--threads" && a + 1 < argc) {
            threads = std::stoul(argv[++a]);
        } else {
            std::fprintf(stderr, "usage: %s [--threads N]\n", argv[0]);
            return 2;
        }
    }
    try {
        const fs::path assets = multibool::examples::assets_dir();
        for (const char* name : {"stories260K.bin", "tok512.bin", "tinystories-train.txt", "tinystories-valid.txt"}) {
            if (!fs::exists(assets / name)) {
                std::printf("**skipped: %s not found** (set MULTIBOOL_ASSETS to the folder holding it)\n",
                            (assets / name).string().c_str());
                return 0;
            }
        }
        const auto start = std::chrono::steady_clock::now();
        const auto checkpoint = llama::load_checkpoint(assets / "stories260K.bin");
        const auto tokenizer = llama::load_tokenizer(assets / "tok512.bin");
        const auto train = tokenizer.encode(read_text_file(assets / "tinystories-train.txt"), false, false);
        const auto valid = tokenizer.encode(read_text_file(assets / "tinystories-valid.txt"), false, false);
        const auto inputs =
            record_inputs(checkpoint, std::span<const int>(train).first(std::min(train.size(), kRecordedTokens)));
        std::printf("# Accuracy of the int8 lookup tables on stories260K (Highway target %s)\n\n",
                    std::string(multibool::HighwayBackend::target()).c_str());
        std::printf(
            "Greedy residual weights, fp16 scales. Layer error: ||y_lookup - y_exact|| / ||y_exact|| over the "
            "inputs the float model feeds each projection on the first %zu tokens of tinystories-train.txt "
            "(size-weighted over the 35 projections; worst projection). Perplexity on tinystories-valid.txt "
            "(%zu tokens) with the exact-float HighwayBackend and with HighwayLookupBackend on the same "
            "weights.\n\n",
            kRecordedTokens, valid.size());
        std::printf("| K | G | layer rel. error | worst layer | PPL exact | PPL lookup | change |\n");
        std::printf("|---|---|---|---|---|---|---|\n");
        report<1, 64>(checkpoint, inputs, valid, threads);
        report<2, 64>(checkpoint, inputs, valid, threads);
        report<3, 64>(checkpoint, inputs, valid, threads);
        report<1, 128>(checkpoint, inputs, valid, threads);
        report<2, 128>(checkpoint, inputs, valid, threads);
        report<3, 128>(checkpoint, inputs, valid, threads);
        std::printf("\n_total: %.1f s_\n",
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "multibool-lookup-accuracy: %s\n", e.what());
        return 1;
    }
    return 0;
}
