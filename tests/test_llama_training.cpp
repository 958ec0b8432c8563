// Backpropagation through the LLaMA example (operations.hpp, backprop.hpp, distillation.hpp): the
// backward of each block operation against central finite differences of its forward, the training
// pass's forward against the inference forward, and every gradient against central finite
// differences of the distillation loss, for float layers and for multi-Boolean ones (input and
// scale gradients), on small random models with grouped-query attention.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "llama/backprop.hpp"
#include "llama/collective.hpp"
#include "llama/conversion.hpp"
#include "llama/distillation.hpp"
#include "llama/operations.hpp"
#include "llama/transformer.hpp"
#include "llama_test_support.hpp"
#include "multibool/backends/scalar_backend.hpp"
#include "multibool/training/scale_gradient.hpp"
#include "multibool/training/weight_gradient.hpp"
#include "test_support.hpp"

namespace {

using namespace multibool;
using namespace multibool::llama;
using testing::FloatModel;

Config tiny_config(bool tied) { return Config{16, 24, 2, 4, 2, 32, 16, tied}; }

constexpr std::size_t sequences = 2;
constexpr std::size_t length = 6;

// The student's and a fixed teacher's outputs, and the loss with every term switched on.
template <class Linear>
struct Objective {
    const FloatModel& teacher;
    std::vector<int> tokens, targets;
    DistillationOptions options;
    std::size_t threads = 1;

    LossParts evaluate(const Transformer<Linear>& student, TrainingPass<Linear>& pass, std::vector<float>& dlogits,
                       std::vector<std::vector<float>>& dhidden) const {
        TrainingPass<DenseLinear> teacher_pass(teacher.config(), sequences, length);
        teacher_pass.forward(teacher, tokens, 1);
        pass.forward(student, tokens, threads);
        std::vector<MatrixView<const float>> student_hidden, teacher_hidden;
        for (std::size_t l = 0; l < student.config().n_layers; ++l) {
            student_hidden.push_back(pass.hidden(l));
            teacher_hidden.push_back(teacher_pass.hidden(l));
        }
        dlogits.assign(pass.tokens() * student.config().vocab_size, 0.0f);
        return distillation_loss({pass.logits(), teacher_pass.logits(), student_hidden, teacher_hidden, targets},
                                 options, testing::view(dlogits, pass.tokens(), student.config().vocab_size), dhidden,
                                 threads);
    }
    double loss(const Transformer<Linear>& student) const {
        TrainingPass<Linear> pass(student.config(), sequences, length);
        std::vector<float> dlogits;
        std::vector<std::vector<float>> dhidden;
        return evaluate(student, pass, dlogits, dhidden).total;
    }
    // Runs forward and backward; the pass then holds the projections' X and dY.
    void gradients(const Transformer<Linear>& student, TrainingPass<Linear>& pass, FloatGradients& out) const {
        std::vector<float> dlogits;
        std::vector<std::vector<float>> dhidden;
        evaluate(student, pass, dlogits, dhidden);
        std::vector<MatrixView<const float>> views;
        for (auto& g : dhidden) {
            views.push_back(g.empty() ? MatrixView<const float>()
                                      : testing::view(g, pass.tokens(), student.config().dim));
        }
        pass.backward(student, testing::view(dlogits, pass.tokens(), student.config().vocab_size), views, threads,
                      &out);
    }
};

std::vector<int> random_tokens(std::size_t n, std::size_t vocab, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> dist(0, int(vocab) - 1);
    std::vector<int> tokens(n);
    for (auto& t : tokens) t = dist(rng);
    return tokens;
}

// Central difference of loss() in one parameter, restored afterwards.
template <class Loss>
double central_difference(const Loss& loss, float& parameter, float step) {
    const float saved = parameter;
    parameter = saved + step;
    const double up = loss();
    parameter = saved - step;
    const double down = loss();
    parameter = saved;
    return (up - down) / (double(parameter + step) - double(parameter - step));
}

template <class Linear>
double numeric_derivative(const Objective<Linear>& objective, Transformer<Linear>& model, float& parameter,
                          float step) {
    return central_difference([&] { return objective.loss(model); }, parameter, step);
}

// Analytic within 2 % (plus an absolute floor for float rounding in the differences).
void check_derivative(double analytic, double numeric, const std::string& what) {
    INFO(what << ": analytic " << analytic << ", finite difference " << numeric);
    CHECK(std::abs(analytic - numeric) <= 2e-3 + 0.02 * std::abs(numeric));
}

// Every element of each parameter vector against the central difference of loss(); the analytic
// gradients were taken at the unperturbed parameters.
template <class Loss>
void check_every_element(
    const Loss& loss,
    std::initializer_list<std::pair<std::vector<float>*, const std::vector<float>*>> parameters_and_gradients,
    const std::string& what) {
    for (const auto& [parameter, gradient] : parameters_and_gradients) {
        for (std::size_t e = 0; e < parameter->size(); ++e) {
            check_derivative((*gradient)[e], central_difference(loss, (*parameter)[e], 1e-2f),
                             what + " element " + std::to_string(e));
        }
    }
}

// sum(weights * values) in double: a scalar loss whose gradient with respect to values is weights.
double weighted_sum(const std::vector<float>& weights, const std::vector<float>& values) {
    double sum = 0.0;
    for (std::size_t e = 0; e < values.size(); ++e) sum += double(weights[e]) * values[e];
    return sum;
}

}  // namespace

TEST_CASE("RMSNorm's backward matches finite differences of its forward", "[llama][training]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    constexpr std::size_t rows = 3, dim = 10;
    auto x = testing::random_floats(rows * dim, rng);
    auto weight = testing::random_floats(dim, rng, 0.2f);
    for (float& w : weight) w += 1.0f;
    const auto dout = testing::random_floats(rows * dim, rng);
    std::vector<float> out(rows * dim), inverse(rows);
    const auto loss = [&] {
        rms_norm(testing::view(x, rows, dim), weight, 1e-5f, testing::view(out, rows, dim), inverse);
        return weighted_sum(dout, out);
    };
    loss();
    std::vector<float> dx(rows * dim, 0.0f), dweight(dim, 0.0f);
    rms_norm_backward(testing::view(x, rows, dim), inverse, weight, testing::view(dout, rows, dim),
                      testing::view(dx, rows, dim), dweight);
    check_every_element(loss, {{&x, &dx}, {&weight, &dweight}}, "x, weight");
}

TEST_CASE("causal grouped-query attention's backward matches finite differences of its forward", "[llama][training]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    // 4 query heads over 2 key/value heads of 4; 3 queries at positions 2..4 after 2 earlier positions.
    const AttentionHeads heads{4, 2, 4};
    constexpr std::size_t positions = 5, queries = 3, first = positions - queries, dim = 16, kv_dim = 8;
    auto q = testing::random_floats(queries * dim, rng);
    auto keys = testing::random_floats(positions * kv_dim, rng);
    auto values = testing::random_floats(positions * kv_dim, rng);
    const auto dout = testing::random_floats(queries * dim, rng);
    std::vector<float> probabilities(heads.heads * queries * positions), out(queries * dim);
    const auto probability_row = [&](std::size_t h, std::size_t t) {
        return std::span<float>(probabilities).subspan((h * queries + t) * positions, first + t + 1);
    };
    const auto loss = [&] {
        causal_attention(heads, testing::view(q, queries, dim), testing::view(keys, positions, kv_dim),
                         testing::view(values, positions, kv_dim), probability_row, testing::view(out, queries, dim));
        return weighted_sum(dout, out);
    };
    loss();
    std::vector<float> dq(q.size()), dkeys(keys.size()), dvalues(values.size()), dscores(positions);
    causal_attention_backward(heads, testing::view(q, queries, dim), testing::view(keys, positions, kv_dim),
                              testing::view(values, positions, kv_dim), probability_row,
                              testing::view(dout, queries, dim), dscores, testing::view(dq, queries, dim),
                              testing::view(dkeys, positions, kv_dim), testing::view(dvalues, positions, kv_dim));
    check_every_element(loss, {{&q, &dq}, {&keys, &dkeys}, {&values, &dvalues}}, "q, keys, values");
}

TEST_CASE("the SwiGLU derivative matches a hand-worked case", "[llama][training]") {
    // At g = ln 3, sigmoid(g) = 3/4: d silu/dg = 3/4 (1 + ln 3 / 4) = 0.955990, silu(g) / u = 3/4 ln 3.
    const SwigluGradient at_ln3 = swiglu_backward(std::log(3.0f), 2.0f, 0.5f);
    CHECK(at_ln3.gate == Approx(0.5 * 2.0 * 0.955990).epsilon(1e-5));
    CHECK(at_ln3.up == Approx(0.5 * 0.823959).epsilon(1e-5));
    // At g = 0 the sigmoid is 1/2: the gate's derivative is u / 2 and silu(0) = 0 blocks the up path.
    const SwigluGradient at_zero = swiglu_backward(0.0f, 3.0f, 2.0f);
    CHECK(at_zero.gate == 3.0f);
    CHECK(at_zero.up == 0.0f);
}

TEST_CASE("the training pass forward equals the inference forward bit for bit", "[llama][training]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (const bool tied : {true, false}) {
        const FloatModel model = testing::float_model(testing::random_checkpoint(tiny_config(tied), rng));
        const auto tokens = random_tokens(sequences * length, model.config().vocab_size, rng);
        TrainingPass<DenseLinear> pass(model.config(), sequences, length);
        pass.forward(model, tokens, 2);
        for (std::size_t s = 0; s < sequences; ++s) {
            Session session(model.config(), length);
            const auto logits =
                model.forward(std::span<const int>(tokens).subspan(s * length, length), 0, session, Logits::all);
            for (std::size_t t = 0; t < length; ++t) {
                for (std::size_t v = 0; v < model.config().vocab_size; ++v) {
                    REQUIRE(pass.logits()(s * length + t, v) == logits.row(t)[v]);
                }
            }
        }
    }
}

TEST_CASE("whole-model gradients of a float model match finite differences", "[llama][training]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (const bool tied : {true, false}) {
        CAPTURE(tied);
        const Config c = tiny_config(tied);
        const FloatModel teacher = testing::float_model(testing::random_checkpoint(c, rng));
        FloatModel student = testing::float_model(testing::random_checkpoint(c, rng));
        Objective<DenseLinear> objective{teacher,
                                         random_tokens(sequences * length, c.vocab_size, rng),
                                         random_tokens(sequences * length, c.vocab_size, rng),
                                         {},
                                         2};
        objective.options.cross_entropy_weight = 0.5f;
        objective.options.temperature = 1.5f;
        objective.options.hidden_blocks = {true, false};

        TrainingPass<DenseLinear> pass(c, sequences, length);
        FloatGradients grads;
        objective.gradients(student, pass, grads);
        constexpr float step = 2e-3f;
        std::uniform_int_distribution<std::size_t> pick(0, 1 << 20);

        for (std::size_t layer = 0; layer < c.n_layers; ++layer) {
            for (Projection p : projections) {
                // dL/dW = dY^T X, formed here from the pass's X and dY.
                const auto x = pass.projection_input(layer, p);
                const auto dy = pass.projection_output_gradient(layer, p);
                auto weights = student.blocks()[layer].projection(p).weights();
                for (int trial = 0; trial < 3; ++trial) {
                    const std::size_t i = pick(rng) % weights.rows(), j = pick(rng) % weights.cols();
                    double analytic = 0.0;
                    for (std::size_t t = 0; t < x.rows(); ++t) analytic += double(dy(t, i)) * x(t, j);
                    check_derivative(analytic, numeric_derivative(objective, student, weights(i, j), step),
                                     "layer " + std::to_string(layer) + " " + projection_name(p) + " (" +
                                         std::to_string(i) + "," + std::to_string(j) + ")");
                }
            }
            for (int trial = 0; trial < 3; ++trial) {
                const std::size_t j = pick(rng) % c.dim;
                check_derivative(grads.rms_att[layer * c.dim + j],
                                 numeric_derivative(objective, student, student.blocks()[layer].rms_att[j], step),
                                 "rms_att " + std::to_string(layer));
                check_derivative(grads.rms_ffn[layer * c.dim + j],
                                 numeric_derivative(objective, student, student.blocks()[layer].rms_ffn[j], step),
                                 "rms_ffn " + std::to_string(layer));
            }
        }
        for (int trial = 0; trial < 4; ++trial) {
            const std::size_t j = pick(rng) % c.dim;
            check_derivative(grads.rms_final[j], numeric_derivative(objective, student, student.rms_final()[j], step),
                             "rms_final");
            // A row of a token that occurs (embedding) and any row (classifier).
            const auto token = std::size_t(objective.tokens[pick(rng) % objective.tokens.size()]);
            check_derivative(grads.token_embedding[token * c.dim + j],
                             numeric_derivative(objective, student, student.token_embedding()(token, j), step),
                             "token_embedding");
            if (!tied) {
                const std::size_t v = pick(rng) % c.vocab_size;
                check_derivative(grads.classifier[v * c.dim + j],
                                 numeric_derivative(objective, student, student.classifier()(v, j), step),
                                 "classifier");
            }
        }
    }
}

TEST_CASE("whole-model gradients through multi-Boolean layers match finite differences", "[llama][training]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Config c = tiny_config(true);
    const auto checkpoint = testing::random_checkpoint(c, rng);
    const FloatModel teacher = testing::float_model(checkpoint);
    using Linear = BooleanLinear<2, 8, float, ScalarBackend>;
    auto student = convert<2, 8, float, ScalarBackend>(checkpoint).first;
    Objective<Linear> objective{teacher,
                                random_tokens(sequences * length, c.vocab_size, rng),
                                random_tokens(sequences * length, c.vocab_size, rng),
                                {},
                                2};
    objective.options.cross_entropy_weight = 0.5f;

    TrainingPass<Linear> pass(c, sequences, length);
    FloatGradients grads;
    objective.gradients(student, pass, grads);
    constexpr float step = 2e-3f;
    std::uniform_int_distribution<std::size_t> pick(0, 1 << 20);

    // Through the Boolean layers' dX (gemm_transposed) into the embedding.
    for (int trial = 0; trial < 6; ++trial) {
        const std::size_t j = pick(rng) % c.dim;
        const auto token = std::size_t(objective.tokens[pick(rng) % objective.tokens.size()]);
        check_derivative(grads.token_embedding[token * c.dim + j],
                         numeric_derivative(objective, student, student.token_embedding()(token, j), step),
                         "token_embedding");
    }
    // dL/dalpha from the gradient tiles dY^T X against perturbing one scale.
    for (std::size_t layer = 0; layer < c.n_layers; ++layer) {
        for (Projection p : projections) {
            const auto x = pass.projection_input(layer, p);
            const auto dy = pass.projection_output_gradient(layer, p);
            auto& linear = student.blocks()[layer].projection(p);
            ScaleGradient<2> scale_gradient(linear.weights());
            for_each_gradient_tile(x, dy, {7, 2}, [&](std::size_t first_row, MatrixView<const float> tile) {
                scale_gradient.accumulate(linear.weights(), first_row, tile);
            });
            const std::size_t k = pick(rng) % 2, i = pick(rng) % linear.out_features(),
                              g = pick(rng) % linear.weights().groups_per_row();
            const auto loss_at = [&](float delta) {
                auto m = linear.weights();
                m.set_scale(k, i, g, m.scales(k, i)[g] + delta);
                Linear changed(m);
                std::swap(linear, changed);
                const double value = objective.loss(student);
                std::swap(linear, changed);
                return value;
            };
            const double numeric = (loss_at(step) - loss_at(-step)) / (2.0 * step);
            check_derivative(scale_gradient(k, i, g), numeric,
                             "layer " + std::to_string(layer) + " " + projection_name(p) + " scale");
        }
    }
}

TEST_CASE("the distillation loss matches a hand-worked case", "[llama][training]") {
    // Two tokens, a vocabulary of 3, temperature 2, two blocks of which only block 1 is matched.
    const std::vector<float> student = {1.0f, 0.0f, -1.0f, 0.5f, 0.5f, 2.0f};
    const std::vector<float> teacher = {0.0f, 2.0f, 0.0f, 1.0f, -1.0f, 0.0f};
    const std::vector<int> targets = {2, 0};
    const std::vector<float> hidden_student = {1, 2, 3, 4}, hidden_teacher = {1, 0, 3, 5};  // 2 tokens x dim 2
    const std::vector<MatrixView<const float>> student_hidden = {testing::view(hidden_student, 2, 2),
                                                                 testing::view(hidden_student, 2, 2)};
    const std::vector<MatrixView<const float>> teacher_hidden = {testing::view(hidden_student, 2, 2),
                                                                 testing::view(hidden_teacher, 2, 2)};
    DistillationOptions options;
    options.temperature = 2.0f;
    options.kl_weight = 0.5f;
    options.hidden_weight = 3.0f;
    options.cross_entropy_weight = 0.25f;
    options.hidden_blocks = {false, true};
    std::vector<float> dlogits(6);
    std::vector<std::vector<float>> dhidden;
    const LossParts parts = distillation_loss(
        {testing::view(student, 2, 3), testing::view(teacher, 2, 3), student_hidden, teacher_hidden, targets}, options,
        testing::view(dlogits, 2, 3), dhidden, 1);

    // The reference, term by term in double.
    const auto softmax = [](const float* z, double t) {
        std::vector<double> p(3);
        double sum = 0;
        for (int v = 0; v < 3; ++v) sum += p[v] = std::exp(z[v] / t);
        for (auto& e : p) e /= sum;
        return p;
    };
    double kl = 0, ce = 0;
    std::vector<double> expected_dlogits(6);
    for (int t = 0; t < 2; ++t) {
        const auto p = softmax(&teacher[3 * t], 2.0), q = softmax(&student[3 * t], 2.0),
                   q1 = softmax(&student[3 * t], 1.0);
        for (int v = 0; v < 3; ++v) {
            kl += 4.0 * p[v] * std::log(p[v] / q[v]) / 2.0;  // T^2 KL, mean over 2 tokens
            expected_dlogits[3 * t + v] = 0.5 * 2.0 * (q[v] - p[v]) / 2.0 + 0.25 * (q1[v] - (v == targets[t])) / 2.0;
        }
        ce -= std::log(q1[targets[t]]) / 2.0;
    }
    const double mse = (0.0 + 4.0 + 0.0 + 1.0) / 4.0;  // block 1 only: (2-0)^2 and (4-5)^2 over 4 values
    CHECK(parts.kl == Approx(kl).epsilon(1e-6));
    CHECK(parts.cross_entropy == Approx(ce).epsilon(1e-6));
    CHECK(parts.hidden_mse == Approx(mse));
    CHECK(parts.total == Approx(0.5 * kl + 3.0 * mse + 0.25 * ce).epsilon(1e-6));
    for (int e = 0; e < 6; ++e) CHECK(dlogits[e] == Approx(expected_dlogits[e]).margin(1e-6));
    REQUIRE(dhidden.size() == 2);
    CHECK(dhidden[0].empty());
    const std::vector<float> expected_dhidden = {0.0f, 3.0f * 2 * 2 / 4, 0.0f, 3.0f * 2 * -1 / 4};
    REQUIRE(dhidden[1].size() == 4);
    for (int e = 0; e < 4; ++e) CHECK(dhidden[1][e] == Approx(expected_dhidden[e]));

    // Token by token, as the ranks of a data-parallel run compute their shares: the same
    // gradients to the bit, and the same parts once every token's terms are summed in order.
    std::vector<float> piecewise_dlogits(6, -1.0f);
    std::vector<std::vector<float>> piecewise_dhidden;
    TokenLosses losses;
    for (const TokenRange range : {TokenRange{1, 2}, TokenRange{0, 1}}) {
        distillation_terms(
            {testing::view(student, 2, 3), testing::view(teacher, 2, 3), student_hidden, teacher_hidden, targets},
            options, range, testing::view(piecewise_dlogits, 2, 3), piecewise_dhidden, losses, 1);
    }
    CHECK(piecewise_dlogits == dlogits);
    CHECK(piecewise_dhidden == dhidden);
    const LossParts summed = sum_losses(losses, options, 2, 2);
    CHECK(summed.kl == parts.kl);
    CHECK(summed.cross_entropy == parts.cross_entropy);
    CHECK(summed.hidden_mse == parts.hidden_mse);
    CHECK(summed.total == parts.total);
}

TEST_CASE("a batch's sequences are shared among ranks in contiguous, rank-ordered pieces", "[llama][training]") {
    CHECK(sequence_share(5, 0, 1) == SequenceShare{0, 5});
    CHECK(sequence_share(5, 0, 2) == SequenceShare{0, 2});
    CHECK(sequence_share(5, 1, 2) == SequenceShare{2, 5});
    CHECK(sequence_share(5, 0, 3) == SequenceShare{0, 1});
    CHECK(sequence_share(5, 1, 3) == SequenceShare{1, 3});
    CHECK(sequence_share(5, 2, 3) == SequenceShare{3, 5});
    // More ranks than sequences: some ranks compute none.
    CHECK(sequence_share(2, 0, 3) == SequenceShare{0, 0});
    CHECK(sequence_share(2, 1, 3) == SequenceShare{0, 1});
    CHECK(sequence_share(2, 2, 3) == SequenceShare{1, 2});
}

TEST_CASE("the training pass refuses mismatched inputs", "[llama][training]") {
    std::mt19937_64 rng(7);
    const FloatModel model = testing::float_model(testing::random_checkpoint(tiny_config(true), rng));
    TrainingPass<DenseLinear> pass(model.config(), sequences, length);
    CHECK_THROWS_WITH(pass.forward(model, std::vector<int>(5, 1), 1), Catch::Contains("5 tokens"));
    std::vector<int> tokens(sequences * length, 1);
    tokens[3] = 99;
    CHECK_THROWS_WITH(pass.forward(model, tokens, 1), Catch::Contains("token 99 at index 3"));
    CHECK_THROWS_WITH(TrainingPass<DenseLinear>(model.config(), 1, 17), Catch::Contains("1..16"));
}
