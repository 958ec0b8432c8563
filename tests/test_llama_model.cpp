// The LLaMA example's forward pass, perplexity protocol, generation, conversion and model file:
// against an independent double-precision forward written here, against the shipped model's
// published figures, and against itself under a change of path (cache vs recompute, Boolean
// layers vs dense layers on the dequantized weights, one thread vs several).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

#include "llama/calibration.hpp"
#include "llama/checkpoint.hpp"
#include "llama/conversion.hpp"
#include "llama/generation.hpp"
#include "llama/model_file.hpp"
#include "llama/perplexity.hpp"
#include "llama/sensitivity.hpp"
#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"
#include "llama_test_support.hpp"
#include "multibool/backends/scalar_backend.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace multibool;
using namespace multibool::llama;
using Catch::Matchers::Contains;

using testing::float_model;
using testing::FloatModel;
using testing::random_checkpoint;

// Grouped-query attention (4 query heads over 2 KV heads), seq_len above the 256-token chunk.
Config small_config(bool tied) { return Config{32, 48, 2, 4, 2, 40, 300, tied}; }

std::vector<int> random_tokens(std::size_t n, std::size_t vocab, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> dist(0, int(vocab) - 1);
    std::vector<int> tokens(n);
    for (auto& t : tokens) t = dist(rng);
    return tokens;
}

// An independent forward in double: the whole sequence at once, no cache, straight from the
// README's description of the architecture. Returns the logits of every position.
std::vector<std::vector<double>> reference_logits(const Checkpoint& ckpt, const std::vector<int>& tokens) {
    const Config& c = ckpt.config();
    const std::size_t n = tokens.size();
    const std::size_t hs = c.head_size();
    using Rows = std::vector<std::vector<double>>;
    const auto matmul = [](const Rows& x, MatrixView<const float> w) {
        Rows y(x.size(), std::vector<double>(w.rows(), 0.0));
        for (std::size_t t = 0; t < x.size(); ++t) {
            for (std::size_t i = 0; i < w.rows(); ++i) {
                for (std::size_t j = 0; j < w.cols(); ++j) y[t][i] += double(w(i, j)) * x[t][j];
            }
        }
        return y;
    };
    const auto rms_norm = [&](const Rows& x, std::span<const float> weight) {
        Rows y = x;
        for (auto& row : y) {
            double ss = 0.0;
            for (double e : row) ss += e * e;
            const double inv = 1.0 / std::sqrt(ss / double(row.size()) + double(c.norm_epsilon));
            for (std::size_t j = 0; j < row.size(); ++j) row[j] *= inv * weight[j];
        }
        return y;
    };
    const auto rope = [&](Rows& x) {
        for (std::size_t pos = 0; pos < x.size(); ++pos) {
            for (std::size_t i = 0; i < x[pos].size(); i += 2) {
                const double angle = double(pos) / std::pow(double(c.rope_theta), double(i % hs) / double(hs));
                const double a = x[pos][i];
                const double b = x[pos][i + 1];
                x[pos][i] = a * std::cos(angle) - b * std::sin(angle);
                x[pos][i + 1] = a * std::sin(angle) + b * std::cos(angle);
            }
        }
    };
    Rows x(n);
    for (std::size_t t = 0; t < n; ++t) {
        const auto row = ckpt.token_embedding().row(std::size_t(tokens[t]));
        x[t].assign(row.begin(), row.end());
    }
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        Rows xn = rms_norm(x, ckpt.rms_att(l));
        Rows q = matmul(xn, ckpt.wq(l));
        Rows k = matmul(xn, ckpt.wk(l));
        const Rows v = matmul(xn, ckpt.wv(l));
        rope(q);
        rope(k);
        Rows attended(n, std::vector<double>(c.dim, 0.0));
        for (std::size_t t = 0; t < n; ++t) {
            for (std::size_t h = 0; h < c.n_heads; ++h) {
                const std::size_t kvh = h * c.n_kv_heads / c.n_heads;
                std::vector<double> score(t + 1);
                for (std::size_t p = 0; p <= t; ++p) {
                    for (std::size_t i = 0; i < hs; ++i) score[p] += q[t][h * hs + i] * k[p][kvh * hs + i];
                    score[p] /= std::sqrt(double(hs));
                }
                const double max = *std::max_element(score.begin(), score.end());
                double sum = 0.0;
                for (auto& s : score) sum += (s = std::exp(s - max));
                for (std::size_t p = 0; p <= t; ++p) {
                    for (std::size_t i = 0; i < hs; ++i) attended[t][h * hs + i] += score[p] / sum * v[p][kvh * hs + i];
                }
            }
        }
        const Rows o = matmul(attended, ckpt.wo(l));
        for (std::size_t t = 0; t < n; ++t) {
            for (std::size_t j = 0; j < c.dim; ++j) x[t][j] += o[t][j];
        }
        xn = rms_norm(x, ckpt.rms_ffn(l));
        Rows gate = matmul(xn, ckpt.w1(l));
        const Rows up = matmul(xn, ckpt.w3(l));
        for (std::size_t t = 0; t < n; ++t) {
            for (std::size_t j = 0; j < c.hidden_dim; ++j)
                gate[t][j] = gate[t][j] / (1.0 + std::exp(-gate[t][j])) * up[t][j];
        }
        const Rows down = matmul(gate, ckpt.w2(l));
        for (std::size_t t = 0; t < n; ++t) {
            for (std::size_t j = 0; j < c.dim; ++j) x[t][j] += down[t][j];
        }
    }
    return matmul(rms_norm(x, ckpt.rms_final()), ckpt.classifier());
}

// Largest |a - b| over all logits, relative to the largest |b|.
double max_relative_difference(SessionLogits a, const std::vector<std::vector<double>>& b) {
    double diff = 0.0;
    double scale = 0.0;
    for (std::size_t t = 0; t < b.size(); ++t) {
        for (std::size_t j = 0; j < b[t].size(); ++j) {
            diff = std::max(diff, std::fabs(double(a.row(t)[j]) - b[t][j]));
            scale = std::max(scale, std::fabs(b[t][j]));
        }
    }
    return diff / scale;
}

// A copy of the logits that outlives the session's next forward().
std::vector<std::vector<double>> to_rows(SessionLogits m) {
    std::vector<std::vector<double>> rows(m.rows());
    for (std::size_t t = 0; t < m.rows(); ++t) rows[t].assign(m.row(t).begin(), m.row(t).end());
    return rows;
}

// A dense layer that counts how it is called, to check that prefill uses the batch path.
struct CountingLinear {
    DenseLinear dense;
    mutable std::size_t vector_calls = 0;
    mutable std::size_t batch_calls = 0;

    [[nodiscard]] std::size_t in_features() const noexcept { return dense.in_features(); }
    [[nodiscard]] std::size_t out_features() const noexcept { return dense.out_features(); }
    void forward(std::span<const float> x, std::span<float> y) const {
        ++vector_calls;
        dense.forward(x, y);
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        ++batch_calls;
        dense.forward(xs, ys);
    }
    void backward_input(std::span<const float> dy, std::span<float> dx) const { dense.backward_input(dy, dx); }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const { dense.backward_input(dys, dxs); }
};

// A converted model and the float model built from its dequantized weights.
template <std::size_t K, std::size_t G>
std::pair<BooleanTransformer<K, G, half, ScalarBackend>, FloatModel> boolean_and_dequantized(const Checkpoint& ckpt) {
    // The exact scalar products: these tests check the model's wiring, not the int8 tables.
    auto boolean = convert<K, G, half, ScalarBackend>(ckpt).first;
    std::vector<Block<DenseLinear>> blocks(boolean.blocks().size());
    for (std::size_t l = 0; l < blocks.size(); ++l) {
        blocks[l].rms_att = boolean.blocks()[l].rms_att;
        blocks[l].rms_ffn = boolean.blocks()[l].rms_ffn;
        for (Projection p : projections) {
            const auto& m = boolean.blocks()[l].projection(p).weights();
            blocks[l].projection(p) = DenseLinear(m.dequantize(), m.rows(), m.cols());
        }
    }
    const auto& t = ckpt.tensors();
    FloatModel dense(ckpt.config(), FloatTensors{t.token_embedding, t.rms_final, t.wcls}, std::move(blocks));
    return {std::move(boolean), std::move(dense)};
}

fs::path asset(const char* name) { return examples::assets_dir() / name; }

}  // namespace

TEST_CASE("the float forward matches an independent double-precision forward", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (const bool tied : {true, false}) {
        CAPTURE(tied);
        const Checkpoint ckpt = random_checkpoint(small_config(tied), rng);
        const FloatModel model = float_model(ckpt);
        const std::vector<int> tokens = random_tokens(37, ckpt.config().vocab_size, rng);
        Session session(model.config());
        const auto logits = model.forward(tokens, 0, session);
        REQUIRE(logits.rows() == tokens.size());
        CHECK(max_relative_difference(logits, reference_logits(ckpt, tokens)) < 1e-5);
    }
}

TEST_CASE("KV-cache decoding equals recomputing the whole sequence", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    const FloatModel model = float_model(ckpt);
    const std::vector<int> tokens = random_tokens(50, ckpt.config().vocab_size, rng);

    Session full(model.config());
    const auto all = to_rows(model.forward(tokens, 0, full));

    // One token at a time, then a prefill of 20 followed by one chunk of 30.
    Session stepwise(model.config());
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        const auto logits = model.forward(std::span<const int>(tokens).subspan(t, 1), t, stepwise);
        const std::vector<std::vector<double>> expected{all[t]};
        CHECK(max_relative_difference(logits, expected) < 1e-6);
    }
    Session split(model.config());
    model.forward(std::span<const int>(tokens).first(20), 0, split);
    const auto rest = model.forward(std::span<const int>(tokens).subspan(20), 20, split, Logits::last);
    REQUIRE(rest.rows() == 1);
    CHECK(max_relative_difference(rest, {all.back()}) < 1e-6);
}

TEST_CASE("prefill runs every projection once per layer through the batch path", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    const auto model = Transformer<CountingLinear>::from_checkpoint(
        ckpt, [](MatrixView<const float> w, std::size_t, Projection) { return CountingLinear{DenseLinear(w)}; });
    Session session(model.config());
    model.forward(random_tokens(17, ckpt.config().vocab_size, rng), 0, session);
    for (const auto& block : model.blocks()) {
        for (Projection p : projections) {
            CAPTURE(projection_name(p));
            CHECK(block.projection(p).batch_calls == 1);
            CHECK(block.projection(p).vector_calls == 0);
        }
    }
}

TEST_CASE("with MultiBoolLinear layers the forward equals the float forward on the dequantized weights",
          "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(false), rng);
    const std::vector<int> tokens = random_tokens(40, ckpt.config().vocab_size, rng);
    const auto check = [&]<std::size_t K, std::size_t G>() {
        CAPTURE(K, G);
        const auto [boolean, dense] = boolean_and_dequantized<K, G>(ckpt);
        Session a(boolean.config());
        Session b(dense.config());
        const auto expected = to_rows(dense.forward(tokens, 0, b));
        CHECK(max_relative_difference(boolean.forward(tokens, 0, a), expected) < 1e-4);
    };
    const auto each_group = [&]<std::size_t K>() {
        check.template operator()<K, 32>();
        check.template operator()<K, 64>();
        check.template operator()<K, 128>();
    };
    each_group.template operator()<1>();
    each_group.template operator()<2>();
    each_group.template operator()<3>();
    each_group.template operator()<4>();
}

TEST_CASE("perplexity follows the chunk protocol and does not depend on the thread count", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    const FloatModel model = float_model(ckpt);
    // 256 + 44 tokens: a full chunk and a short last one.
    const std::vector<int> stream = random_tokens(300, ckpt.config().vocab_size, rng);

    double expected_nll = 0.0;
    for (std::size_t begin = 0; begin < stream.size(); begin += 256) {
        const std::size_t n = std::min<std::size_t>(256, stream.size() - begin);
        std::vector<int> input{Tokenizer::bos};
        input.insert(input.end(), stream.begin() + long(begin), stream.begin() + long(begin + n - 1));
        const auto logits = reference_logits(ckpt, input);
        for (std::size_t t = 0; t < n; ++t) {
            double sum = 0.0;
            for (double l : logits[t]) sum += std::exp(l);
            expected_nll += std::log(sum) - logits[t][std::size_t(stream[begin + t])];
        }
    }
    const PerplexityResult one = perplexity(model, stream, 1);
    CHECK(one.negative_log_likelihood == Approx(expected_nll).epsilon(1e-5));
    const PerplexityResult three = perplexity(model, stream, 3);
    CHECK(three.negative_log_likelihood == one.negative_log_likelihood);
}

TEST_CASE("KL sensitivity is the mean per-token KL of the model with one projection replaced", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(false), rng);
    // 40 + 30 tokens scored: a chunk of 40 and a short last one.
    const std::vector<int> stream = random_tokens(90, ckpt.config().vocab_size, rng);
    const KlSensitivity sensitivity(ckpt, stream, 70, 40);
    CHECK(sensitivity.positions() == 70);

    const MatrixView<const float> w1 = ckpt.w1(1);
    const std::vector<float> original(w1.data().begin(), w1.data().end());
    std::vector<float> perturbed = original;
    for (float& w : perturbed) w += std::normal_distribution<float>(0.0f, 0.1f)(rng);

    // Directly: the checkpoint with layer 1's w1 replaced, through the double-precision reference forward.
    CheckpointTensors tensors = ckpt.tensors();
    std::copy(perturbed.begin(), perturbed.end(), tensors.w1.begin() + long(original.size()));
    const Checkpoint replaced(ckpt.config(), std::move(tensors));
    const auto log_softmax_of = [](const std::vector<double>& logits) {
        const double largest = *std::max_element(logits.begin(), logits.end());
        double sum = 0.0;
        for (double l : logits) sum += std::exp(l - largest);
        std::vector<double> out;
        for (double l : logits) out.push_back(l - largest - std::log(sum));
        return out;
    };
    double expected = 0.0;
    for (std::size_t begin = 0; begin < 70; begin += 40) {
        const std::size_t n = std::min<std::size_t>(40, 70 - begin);
        std::vector<int> input{Tokenizer::bos};
        input.insert(input.end(), stream.begin() + long(begin), stream.begin() + long(begin + n - 1));
        const auto p = reference_logits(ckpt, input), q = reference_logits(replaced, input);
        for (std::size_t t = 0; t < n; ++t) {
            const auto log_p = log_softmax_of(p[t]), log_q = log_softmax_of(q[t]);
            for (std::size_t v = 0; v < log_p.size(); ++v) expected += std::exp(log_p[v]) * (log_p[v] - log_q[v]);
        }
    }
    expected /= 70.0;
    REQUIRE(expected > 1e-3);
    CHECK(sensitivity.of(1, Projection::w1, perturbed) == Approx(expected).epsilon(1e-3));
    // The unchanged weights cost nothing, and scoring a replacement leaves the model as it was.
    CHECK(sensitivity.of(1, Projection::w1, original) == Approx(0.0).margin(1e-12));
    CHECK_THROWS_WITH(sensitivity.of(0, Projection::wk, original), Contains("layer 0 wk is 16x32, got 1536 values"));
}

TEST_CASE("perplexity follows llama.cpp's protocol: whole windows, BOS first, the second half scored",
          "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(false), rng);
    const FloatModel model = float_model(ckpt);
    // 3 windows of 20 and 7 tokens dropped; positions 10..18 of each window predict tokens 11..19.
    constexpr std::size_t context = 20;
    const std::vector<int> stream = random_tokens(3 * context + 7, ckpt.config().vocab_size, rng);
    // Any id: the protocol writes it over each window's first token; without one (a vocabulary
    // that adds no BOS) windows are fed as they are.
    for (const std::optional<int> bos : {std::optional<int>(7), std::optional<int>()}) {
        CAPTURE(bos.has_value());
        double expected_nll = 0.0;
        for (std::size_t w = 0; w < 3; ++w) {
            std::vector<int> input(stream.begin() + long(w * context), stream.begin() + long((w + 1) * context));
            if (bos) input[0] = *bos;
            const auto logits = reference_logits(ckpt, input);
            for (std::size_t p = context / 2; p + 1 < context; ++p) {
                double sum = 0.0;
                for (double l : logits[p]) sum += std::exp(l);
                expected_nll += std::log(sum) - logits[p][std::size_t(stream[w * context + p + 1])];
            }
        }
        const auto protocol = PerplexityProtocol::llama_cpp(context, bos);
        const PerplexityResult one = perplexity(model, stream, 1, {}, protocol);
        CHECK(one.tokens == 3 * 9);
        CHECK(one.negative_log_likelihood == Approx(expected_nll).epsilon(1e-5));
        CHECK(perplexity(model, stream, 2, {}, protocol).negative_log_likelihood == one.negative_log_likelihood);
        // llama-perplexity wants at least two windows of text.
        REQUIRE_THROWS_WITH(perplexity(model, std::span<const int>(stream).first(2 * context - 1), 1, {}, protocol),
                            Contains("at least two windows"));
    }
}

TEST_CASE("the forward uses the config's RoPE theta and RMSNorm epsilon (a GGUF file's values)", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    Config c = small_config(true);
    const Checkpoint llama2c = random_checkpoint(c, rng);
    c.rope_theta = 500000.0f;
    c.norm_epsilon = 1e-2f;
    const Checkpoint other(c, llama2c.tensors());
    const std::vector<int> tokens = random_tokens(12, c.vocab_size, rng);
    Session a(other.config());
    const FloatModel model = float_model(other);
    const auto logits = model.forward(tokens, 0, a, Logits::all);
    CHECK(max_relative_difference(logits, reference_logits(other, tokens)) < 1e-5);
    CHECK(max_relative_difference(logits, reference_logits(llama2c, tokens)) > 1e-3);
}

TEST_CASE("forward refuses tokens outside the vocabulary, gaps in the cache and positions beyond capacity",
          "[llama][model]") {
    std::mt19937_64 rng(testing::fresh_seed());
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    const FloatModel model = float_model(ckpt);
    Session session(model.config());
    const std::vector<int> bad_token{1, 40};
    REQUIRE_THROWS_WITH(model.forward(bad_token, 0, session), Contains("token 40") && Contains("vocabulary of 40"));
    const std::vector<int> two{1, 5};
    REQUIRE_THROWS_WITH(model.forward(two, 3, session), Contains("start position 3") && Contains("0 cached"));
    Session short_session(model.config(), 8);
    model.forward(random_tokens(7, 40, rng), 0, short_session);
    REQUIRE_THROWS_WITH(model.forward(two, 7, short_session), Contains("positions 7..8") && Contains("capacity 8"));
    REQUIRE_THROWS_AS(Session(model.config(), 0), std::invalid_argument);
}

TEST_CASE("perplexity refuses targets outside the vocabulary and passes on a worker's failure", "[llama][model]") {
    std::mt19937_64 rng(testing::fresh_seed());
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    // The last token of a chunk is only a target, never an input of forward().
    std::vector<int> stream = random_tokens(256, 40, rng);
    stream.back() = 40;
    REQUIRE_THROWS_WITH(perplexity(float_model(ckpt), stream, 2), Contains("token 40 at index 255"));

    // Layers that fail on the 40th batch product of 70 (5 chunks x 14 projections), on whichever
    // of the 3 workers gets there.
    struct FailingLinear {
        DenseLinear dense;
        std::atomic<int>* batches;
        [[nodiscard]] std::size_t in_features() const noexcept { return dense.in_features(); }
        [[nodiscard]] std::size_t out_features() const noexcept { return dense.out_features(); }
        void forward(std::span<const float> x, std::span<float> y) const { dense.forward(x, y); }
        void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
            if (++*batches == 40) throw std::runtime_error("layer failed");
            dense.forward(xs, ys);
        }
        void backward_input(std::span<const float> dy, std::span<float> dx) const { dense.backward_input(dy, dx); }
        void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
            dense.backward_input(dys, dxs);
        }
    };
    std::atomic<int> batches{0};
    const auto failing =
        Transformer<FailingLinear>::from_checkpoint(ckpt, [&](MatrixView<const float> w, std::size_t, Projection) {
            return FailingLinear{DenseLinear(w), &batches};
        });
    REQUIRE_THROWS_WITH(perplexity(failing, random_tokens(5 * 256, 40, rng), 3), Contains("layer failed"));
}
TEST_CASE("a converted model survives save and load, and a file for another K, G or a damaged file is refused",
          "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    testing::TempDir dir;
    for (const bool tied : {true, false}) {
        CAPTURE(tied);
        const Checkpoint ckpt = random_checkpoint(small_config(tied), rng);
        const auto [model, report] = convert<3, 32>(ckpt);
        REQUIRE(report.projections.size() == 7 * ckpt.config().n_layers);
        const fs::path path = dir.path() / (tied ? "tied.mbool" : "untied.mbool");
        save_model(model, path);
        REQUIRE(is_model_file(path));
        const auto header = read_model_header(path);
        CHECK(header.kernels == 3);
        CHECK(header.group_size == 32);
        CHECK(header.config == ckpt.config());

        const auto loaded = load_model<3, 32>(path);
        for (std::size_t l = 0; l < ckpt.config().n_layers; ++l) {
            for (Projection p : projections) {
                const auto& a = model.blocks()[l].projection(p).weights();
                const auto& b = loaded.blocks()[l].projection(p).weights();
                CHECK(std::ranges::equal(a.words(), b.words()));
                CHECK(std::ranges::equal(a.scale_data(), b.scale_data()));
            }
        }
        const std::vector<int> tokens = random_tokens(12, ckpt.config().vocab_size, rng);
        Session s1(model.config());
        Session s2(loaded.config());
        const auto expected = to_rows(model.forward(tokens, 0, s1));
        CHECK(max_relative_difference(loaded.forward(tokens, 0, s2), expected) == 0.0);

        REQUIRE_THROWS_WITH((load_model<2, 32>(path)), Contains("'kernels': expected 2, found 3"));
        REQUIRE_THROWS_WITH((load_model<3, 64>(path)), Contains("'group_size': expected 64, found 32"));
        testing::write_file(dir.path() / "other", "MBOOLBPM and not a model");
        CHECK_FALSE(is_model_file(dir.path() / "other"));

        const std::string bytes = testing::read_file(path);
        const fs::path damaged = dir.path() / "damaged.mbool";
        testing::write_file(damaged, bytes.substr(0, bytes.size() - 100));
        REQUIRE_THROWS_AS((load_model<3, 32>(damaged)), FormatError);
        std::string flipped = bytes;
        flipped[200] = char(flipped[200] ^ 0x10);  // inside the float tensors
        testing::write_file(damaged, flipped);
        REQUIRE_THROWS_WITH((load_model<3, 32>(damaged)), Contains("checksum"));
        testing::write_file(damaged, bytes + "x");
        REQUIRE_THROWS_WITH((load_model<3, 32>(damaged)), Contains("'file length'"));
    }
}

// 64-bit FNV-1a, written here from its definition, to forge files with a valid checksum.
std::uint64_t fnv1a(std::string_view bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (unsigned char b : bytes) hash = (hash ^ b) * 0x100000001b3ULL;
    return hash;
}

TEST_CASE("model files with forged checksums: NaN tensors and absurd headers are refused before allocation",
          "[llama][model]") {
    std::mt19937_64 rng(testing::fresh_seed());
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    testing::TempDir dir;
    const fs::path path = dir.path() / "model.mbool";
    save_model(convert<1, 32>(ckpt).first, path);
    const std::string bytes = testing::read_file(path);
    const Config& c = ckpt.config();
    // magic, version, K, G, word bits, the 7 int32 of the llama2.c header; then the float tensors.
    const std::size_t header = 8 + 4 * 4 + 7 * 4;
    const std::size_t floats = c.vocab_size * c.dim + 2 * c.n_layers * c.dim + c.dim;
    const auto forge = [&](std::string edited) {
        const std::uint64_t checksum = fnv1a(std::string_view(edited).substr(0, header + 4 * floats));
        std::memcpy(edited.data() + header + 4 * floats, &checksum, 8);
        return testing::write_file(dir.path() / "forged.mbool", edited);
    };
    REQUIRE_NOTHROW(load_model<1, 32>(forge(bytes)));  // the forging itself is right

    std::string nan = bytes;
    const float not_a_number = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(nan.data() + header + 4 * 5, &not_a_number, 4);
    REQUIRE_THROWS_WITH((load_model<1, 32>(forge(nan))), Contains("'token_embedding'") && Contains("nan at index 5"));

    // dim, hidden_dim or n_layers = 2^20: the file is far too short, found before any allocation.
    // (seq_len does not size the file; sessions allocate only the positions they are asked for.)
    for (const std::size_t field : {0, 1, 2}) {
        CAPTURE(field);
        std::string absurd = bytes;
        const std::int32_t huge = 1 << 20;
        std::memcpy(absurd.data() + 8 + 4 * 4 + 4 * field, &huge, 4);
        REQUIRE_THROWS_WITH((load_model<1, 32>(forge(absurd))), Contains("'file length'"));
    }
    REQUIRE_THROWS_WITH((load_model<1, 32, half, std::uint32_t>(path)), Contains("'word_bits': expected 32, found 64"));
}

TEST_CASE("the conversion report's errors and sizes agree with the converted matrices", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint ckpt = random_checkpoint(small_config(true), rng);
    const auto [model, report] = convert<2, 64>(ckpt);
    double error = 0.0;
    double norm = 0.0;
    for (const auto& p : report.projections) {
        const MatrixView<const float> w = checkpoint_projection(ckpt, p.layer, p.projection);
        const auto& m = model.blocks()[p.layer].projection(p.projection).weights();
        const std::vector<float> approx = m.dequantize();
        CHECK(p.tally.relative_error() == Approx(testing::relative_frobenius_error(w.data(), approx)).epsilon(1e-9));
        for (std::size_t e = 0; e < approx.size(); ++e) {
            error += std::pow(double(w.data()[e]) - approx[e], 2);
            norm += std::pow(double(w.data()[e]), 2);
        }
    }
    CHECK(report.total().relative_error() == Approx(std::sqrt(error / norm)).epsilon(1e-9));
    // By hand, K = 2, G = 64, fp16 scales: a 32 x 32 wq row is one 64-bit word and one 2-byte
    // scale per kernel, (2 * 8 + 2 * 2) * 32 = 640 bytes for 1024 weights = 5 bits/weight; w2
    // (32 x 48) is the same 640 bytes for 1536 weights = 10/3 bits/weight.
    CHECK(report.projections[0].tally.bits_per_weight() == 5.0);
    CHECK(report.projections[5].tally.bits_per_weight() == Approx(10.0 / 3.0));
}

// A tokenizer with every piece distinct: specials, the 256 byte pieces, " ", then words.
Tokenizer synthetic_tokenizer(std::size_t vocab) {
    std::vector<std::string> pieces{"<unk>", "<s>", "</s>"};
    const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) pieces.push_back(std::string("<0x") + hex[b / 16] + hex[b % 16] + ">");
    pieces.push_back(" ");
    while (pieces.size() < vocab) pieces.push_back("w" + std::to_string(pieces.size()));
    return Tokenizer(pieces, std::vector<float>(pieces.size(), 0.0f));
}

TEST_CASE("generate runs exactly `steps` forward passes and a seed reproduces sampling", "[llama][model]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Config c{32, 48, 2, 4, 2, 300, 40, true};
    const Checkpoint ckpt = random_checkpoint(c, rng);
    const FloatModel model = float_model(ckpt);
    const TextTokenizer tokenizer(synthetic_tokenizer(300));
    const std::string prompt = "ab";  // BOS, " ", 'a', 'b': 4 prompt tokens
    REQUIRE(tokenizer.encode(prompt, true, false).size() == 4);

    // Positions 0..6 are forwarded; the token sampled after the last one is kept. A sampled BOS
    // ends generation early, as in llama2.c, so count what ran instead of assuming.
    Sampler greedy;
    const GenerationResult result = generate(model, tokenizer, prompt, 7, greedy);
    CHECK(result.prompt_tokens == 4);
    CHECK(result.tokens.size() <= 8);
    if (std::ranges::find(result.tokens.begin() + 1, result.tokens.end(), Tokenizer::bos) == result.tokens.end()) {
        CHECK(result.tokens.size() == 8);
    }
    // Steps beyond seq_len run on, as llama.cpp's -c allows (RoPE needs no table).
    Sampler greedy_long;
    const std::vector<int> beyond = generate(model, tokenizer, prompt, c.seq_len + 5, greedy_long).tokens;
    CHECK(beyond.size() <= c.seq_len + 6);
    if (std::ranges::find(beyond.begin() + 1, beyond.end(), Tokenizer::bos) == beyond.end()) {
        CHECK(beyond.size() == c.seq_len + 6);
    }
    Sampler too_short;
    REQUIRE_THROWS_WITH(generate(model, tokenizer, prompt, 3, too_short), Contains("prompt is 4 tokens"));

    Sampler first(1.0f, 7);
    Sampler again(1.0f, 7);
    CHECK(generate(model, tokenizer, prompt, 30, first).tokens == generate(model, tokenizer, prompt, 30, again).tokens);
    REQUIRE_THROWS_AS(Sampler(-1.0f), std::invalid_argument);
}

TEST_CASE("stories260K: float perplexity on both texts matches the assets README", "[llama][assets]") {
    for (const char* name : {"stories260K.bin", "tok512.bin", "tinystories-valid.txt", "tinystories-train.txt"}) {
        if (!testing::assets_present(name)) return;
    }
    const FloatModel model = float_model(load_checkpoint(asset("stories260K.bin")));
    const Tokenizer tokenizer = load_tokenizer(asset("tok512.bin"));
    struct Reference {
        const char* file;
        std::size_t tokens;
        double perplexity;
    };
    for (const Reference& r :
         {Reference{"tinystories-valid.txt", 45641, 7.2486}, Reference{"tinystories-train.txt", 249968, 5.4588}}) {
        CAPTURE(r.file);
        const std::string text = testing::read_file(asset(r.file));
        const PerplexityResult result = perplexity(model, tokenizer.encode(text, false, false), 2);
        CHECK(result.tokens == r.tokens);
        CHECK(result.perplexity() == Approx(r.perplexity).epsilon(1e-3));
    }
}

TEST_CASE("stories260K: greedy generation reproduces llama2.c's continuation", "[llama][assets]") {
    if (!testing::assets_present("stories260K.bin") || !testing::assets_present("tok512.bin")) return;
    const FloatModel model = float_model(load_checkpoint(asset("stories260K.bin")));
    const TextTokenizer tokenizer(load_tokenizer(asset("tok512.bin")));
    std::string text;
    Sampler greedy;
    const GenerationResult result =
        generate(model, tokenizer, "Once upon a time", 256, greedy, [&](std::string_view piece) { text += piece; });
    const std::string expected =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, "
        "she saw a big, red ball. She wanted to play with it, but it was too high.";
    CHECK(text.substr(0, expected.size()) == expected);
    CHECK(result.tokens.front() == Tokenizer::bos);
    CHECK(result.prompt_tokens == tokenizer.encode("Once upon a time", true, false).size());
}

TEST_CASE("stories260K: Boolean layers equal float layers on the dequantized weights", "[llama][assets]") {
    if (!testing::assets_present("stories260K.bin")) return;
    const Checkpoint ckpt = load_checkpoint(asset("stories260K.bin"));
    std::mt19937_64 rng(testing::fresh_seed());
    const std::vector<int> tokens = random_tokens(64, ckpt.config().vocab_size, rng);
    const auto check = [&]<std::size_t K>() {
        CAPTURE(K);
        const auto [boolean, dense] = boolean_and_dequantized<K, 64>(ckpt);
        Session a(boolean.config());
        Session b(dense.config());
        const auto expected = to_rows(dense.forward(tokens, 0, b));
        CHECK(max_relative_difference(boolean.forward(tokens, 0, a), expected) < 1e-4);
    };
    check.template operator()<1>();
    check.template operator()<2>();
    check.template operator()<3>();
    check.template operator()<4>();
}

TEST_CASE("stories260K: the default backend changes the loss of a converted model by under 1 %", "[llama][assets]") {
    // The default backend may compute the forward products through int8 tables; what that costs a
    // real model must stay small. Exact reference: the scalar backend on the same weights.
    if (!testing::assets_present("stories260K.bin") || !testing::assets_present("tok512.bin") ||
        !testing::assets_present("tinystories-valid.txt")) {
        return;
    }
    const Checkpoint ckpt = load_checkpoint(asset("stories260K.bin"));
    const Tokenizer tokenizer = load_tokenizer(asset("tok512.bin"));
    const auto stream = tokenizer.encode(testing::read_file(asset("tinystories-valid.txt")), false, false);
    const std::span<const int> chunk = std::span<const int>(stream).first(perplexity_chunk_tokens);
    const auto exact = convert<3, 64, half, ScalarBackend>(ckpt).first;
    const auto fast = convert<3, 64>(ckpt).first;
    Session a(exact.config());
    Session b(fast.config());
    const double exact_loss = chunk_negative_log_likelihood(exact, chunk, a);
    const double fast_loss = chunk_negative_log_likelihood(fast, chunk, b);
    CAPTURE(exact_loss, fast_loss);
    CHECK(std::fabs(fast_loss - exact_loss) <= 0.01 * exact_loss);
}

// A llama2.c header may claim a seq_len of 2^20: calibration, which feeds 256-token chunks, must
// size its KV cache by the chunk, not by that claim (8 layers x 2^20 positions x 64 x 2 floats
// would be 4 GiB). The process's peak resident memory shows which it did.
TEST_CASE("calibration of a model claiming a 2^20-token context sizes its cache by the chunk", "[llama]") {
    std::mt19937_64 rng(17);
    const Config c{64, 64, 8, 4, 4, 32, std::size_t{1} << 20, true};
    const Checkpoint ckpt = testing::random_checkpoint(c, rng);
    std::vector<int> stream(300);
    for (std::size_t t = 0; t < stream.size(); ++t) stream[t] = int(t % c.vocab_size);
    const CalibrationStatistics statistics = calibrate(ckpt, stream, stream.size());
    CHECK(statistics.tokens() == stream.size());
    rusage usage{};
    REQUIRE(getrusage(RUSAGE_SELF, &usage) == 0);
    CHECK(usage.ru_maxrss < 2L * 1024 * 1024);  // KiB: below 2 GiB
}
