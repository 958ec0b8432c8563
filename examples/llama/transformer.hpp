#pragma once
// The LLaMA forward pass (llama2.c's architecture: RMSNorm, RoPE on adjacent pairs, grouped-query
// causal attention with a KV cache, SwiGLU), written once over the linear-layer type. The seven
// projections of each block are `Linear` (DenseLinear for the float teacher, MultiBoolLinear for
// Boolean kernels); the token embedding, the norms and the classifier stay float.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/operations.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "multibool/nn/linear_layer.hpp"

namespace multibool::llama {

// The projections of one block in checkpoint order; conversion and reports walk this list.
enum class Projection { wq, wk, wv, wo, w1, w2, w3 };
inline constexpr std::array<Projection, 7> projections = {
    Projection::wq, Projection::wk, Projection::wv, Projection::wo, Projection::w1, Projection::w2, Projection::w3};

inline const char* projection_name(Projection p) noexcept {
    static constexpr std::array<const char*, 7> names = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};
    return names[static_cast<std::size_t>(p)];
}

// out x in of a projection under a config.
inline std::pair<std::size_t, std::size_t> projection_shape(const Config& c, Projection p) noexcept {
    switch (p) {
        case Projection::wq:
        case Projection::wo:
            return {c.dim, c.dim};
        case Projection::wk:
        case Projection::wv:
            return {c.kv_dim(), c.dim};
        case Projection::w1:
        case Projection::w3:
            return {c.hidden_dim, c.dim};
        case Projection::w2:
            return {c.dim, c.hidden_dim};
    }
    return {0, 0};
}

inline MatrixView<const float> checkpoint_projection(const Checkpoint& ckpt, std::size_t layer, Projection p) {
    switch (p) {
        case Projection::wq:
            return ckpt.wq(layer);
        case Projection::wk:
            return ckpt.wk(layer);
        case Projection::wv:
            return ckpt.wv(layer);
        case Projection::wo:
            return ckpt.wo(layer);
        case Projection::w1:
            return ckpt.w1(layer);
        case Projection::w2:
            return ckpt.w2(layer);
        case Projection::w3:
            return ckpt.w3(layer);
    }
    throw std::logic_error("checkpoint_projection: unknown projection");
}

template <LinearLayer Linear>
struct Block {
    std::vector<float> rms_att;  // [dim]
    std::vector<float> rms_ffn;  // [dim]
    Linear wq, wk, wv, wo, w1, w2, w3;

    [[nodiscard]] const Linear& projection(Projection p) const noexcept {
        switch (p) {
            case Projection::wq:
                return wq;
            case Projection::wk:
                return wk;
            case Projection::wv:
                return wv;
            case Projection::wo:
                return wo;
            case Projection::w1:
                return w1;
            case Projection::w2:
                return w2;
            case Projection::w3:
                return w3;
        }
        return wq;
    }
    [[nodiscard]] Linear& projection(Projection p) noexcept {
        return const_cast<Linear&>(std::as_const(*this).projection(p));
    }
};

// The attention head layout of a config.
inline AttentionHeads attention_heads(const Config& c) noexcept { return {c.n_heads, c.n_kv_heads, c.head_size()}; }

// Throws std::out_of_range naming the first token outside the vocabulary; `who` names the caller.
inline void check_vocabulary(std::span<const int> tokens, std::size_t vocab_size, const std::string& who) {
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        if (tokens[t] < 0 || std::size_t(tokens[t]) >= vocab_size) {
            throw std::out_of_range(who + ": token " + std::to_string(tokens[t]) + " at index " + std::to_string(t) +
                                    " is outside the vocabulary of " + std::to_string(vocab_size));
        }
    }
}

// The last n rows of m.
template <class T>
MatrixView<T> last_rows(MatrixView<T> m, std::size_t n) {
    return {m.data().subspan((m.rows() - n) * m.cols()), n, m.cols()};
}

// The rows one block reads and writes for n consecutive tokens. The training pass points each at
// its own tape; the inference forward lets a value share a buffer with one that is dead by the time
// it is written (see Transformer::forward), and points keys and values at the KV cache.
struct BlockRows {
    MatrixView<const float> rotation;  // n x head_size: each token's RoPE (cos, sin) pairs
    MatrixView<const float> input;     // n x dim: the residual stream entering the block
    MatrixView<float> att_normed;      // n x dim: RMSNorm(input), read by wq, wk, wv
    std::span<float> att_inverse;      // n: that RMSNorm's factors, or empty when no backward follows
    MatrixView<float> q;               // n x dim, rotated
    MatrixView<float> keys, values;    // a kv_dim row per position up to the last token; the last n are written
    MatrixView<float> attended;        // n x dim: the heads' attention outputs, read by wo
    MatrixView<float> mid;             // n x dim: input + wo(attended); never the input's buffer
    MatrixView<float> ffn_normed;      // n x dim: RMSNorm(mid), read by w1, w3
    std::span<float> ffn_inverse;      // n, or empty
    MatrixView<float> gate, up;        // n x hidden_dim: w1 and w3 outputs
    MatrixView<float> activation;      // n x hidden_dim: swiglu(gate, up), read by w2; may be gate
    MatrixView<float> output;          // n x dim: mid + w2(activation); may be the input's buffer
};

// x += delta, element by element (a residual connection, or a sum of gradients).
inline void add_rows(MatrixView<const float> delta, MatrixView<float> x) noexcept {
    for (std::size_t e = 0; e < x.data().size(); ++e) x.data()[e] += delta.data()[e];
}

// One block over n tokens: RMSNorm -> wq/wk/wv -> RoPE -> causal GQA attention -> wo -> residual ->
// RMSNorm -> w1/w3 -> SwiGLU -> w2 -> residual. Each projection runs once over the n rows (the
// layers' GEMM path); probabilities is causal_attention's.
template <LinearLayer Linear, class Probabilities>
void block_forward(const Block<Linear>& b, const Config& c, const BlockRows& r, Probabilities&& probabilities) {
    const std::size_t n = r.q.rows();
    const MatrixView<float> k = last_rows(r.keys, n);
    const MatrixView<float> v = last_rows(r.values, n);
    rms_norm(r.input, b.rms_att, c.norm_epsilon, r.att_normed, r.att_inverse);
    b.wq.forward(r.att_normed, r.q);
    b.wk.forward(r.att_normed, k);
    b.wv.forward(r.att_normed, v);
    for (std::size_t t = 0; t < n; ++t) {
        rotate(r.q.row(t), r.rotation.row(t));
        rotate(k.row(t), r.rotation.row(t));
    }
    causal_attention(attention_heads(c), r.q, r.keys, r.values, probabilities, r.attended);
    b.wo.forward(r.attended, r.mid);
    add_rows(r.input, r.mid);

    rms_norm(r.mid, b.rms_ffn, c.norm_epsilon, r.ffn_normed, r.ffn_inverse);
    b.w1.forward(r.ffn_normed, r.gate);
    b.w3.forward(r.ffn_normed, r.up);
    for (std::size_t e = 0; e < r.gate.data().size(); ++e) {
        r.activation.data()[e] = swiglu(r.gate.data()[e], r.up.data()[e]);
    }
    b.w2.forward(r.activation, r.output);
    add_rows(r.mid, r.output);
}

// The float tensors every variant of the model keeps as they are.
struct FloatTensors {
    std::vector<float> token_embedding;  // [vocab, dim]
    std::vector<float> rms_final;        // [dim]
    std::vector<float> wcls;             // [vocab, dim]; empty when the classifier is the embedding
};

// Logits that live in a Session: the next forward() on that session overwrites them, so copy what
// must outlive it. One row per scored token, vocab_size columns.
class SessionLogits {
public:
    SessionLogits() = default;
    explicit SessionLogits(MatrixView<const float> rows) noexcept : rows_(rows) {}

    [[nodiscard]] std::size_t rows() const noexcept { return rows_.rows(); }
    [[nodiscard]] std::size_t cols() const noexcept { return rows_.cols(); }
    [[nodiscard]] std::span<const float> row(std::size_t t) const noexcept { return rows_.row(t); }
    [[nodiscard]] std::span<const float> data() const noexcept { return rows_.data(); }
    [[nodiscard]] MatrixView<const float> view() const noexcept { return rows_; }

private:
    MatrixView<const float> rows_;
};

// The per-sequence state: the KV cache and scratch buffers. One per concurrent sequence; the
// model itself is read-only while it runs, so threads share it. The cache holds `capacity`
// positions (by default seq_len, the context the model was trained on; RoPE has no table, so
// like llama.cpp's -c a session may hold more), so scoring 256-token chunks does not pay for
// the model's whole context, and it remembers how many positions are filled, so a call cannot
// read unset keys.
class Session {
public:
    explicit Session(const Config& c) : Session(c, c.seq_len) {}
    Session(const Config& c, std::size_t capacity) : config_(c), capacity_(capacity) {
        if (capacity == 0) throw std::invalid_argument("llama::Session: a capacity of 0 positions");
        const std::size_t cache =
            checked_product("llama::Session", checked_product("llama::Session", c.n_layers, capacity), c.kv_dim());
        keys_.resize(cache);
        values_.resize(cache);
        scores_.resize(capacity);
    }

    [[nodiscard]] const Config& config() const noexcept { return config_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    // Positions 0 .. filled() - 1 hold keys and values.
    [[nodiscard]] std::size_t filled() const noexcept { return filled_; }
    // The logits of the latest forward() on this session (none before the first).
    [[nodiscard]] SessionLogits logits() const {
        return SessionLogits(
            {std::span<const float>(logits_), logits_.size() / config_.vocab_size, config_.vocab_size});
    }

private:
    template <LinearLayer>
    friend class Transformer;

    // Layer `layer`'s cached keys (or values) of positions 0 .. positions - 1, one row each.
    [[nodiscard]] MatrixView<float> keys(std::size_t layer, std::size_t positions) noexcept {
        return cache_rows(keys_, layer, positions);
    }
    [[nodiscard]] MatrixView<float> values(std::size_t layer, std::size_t positions) noexcept {
        return cache_rows(values_, layer, positions);
    }
    [[nodiscard]] MatrixView<float> cache_rows(std::vector<float>& cache, std::size_t layer, std::size_t positions) {
        const std::size_t kv = config_.kv_dim();
        return {std::span<float>(cache).subspan(layer * capacity_ * kv, positions * kv), positions, kv};
    }

    // A tokens x cols view over buffer, grown as needed.
    static MatrixView<float> rows_of(std::vector<float>& buffer, std::size_t tokens, std::size_t cols) {
        buffer.resize(tokens * cols);
        return {std::span<float>(buffer), tokens, cols};
    }

    Config config_;
    std::size_t capacity_ = 0;
    std::size_t filled_ = 0;
    std::vector<float> keys_;      // [layer, pos, kv_dim]
    std::vector<float> values_;    // [layer, pos, kv_dim]
    std::vector<float> scores_;    // [capacity]
    std::vector<float> rotation_;  // [token, head_size]: cos, sin of each pair's angle at its position
    // The block's rows (BlockRows) and the logits; normed_ serves both norms, gate_ the activation too.
    std::vector<float> x_, normed_, q_, attended_, mid_, gate_, up_, logits_;
};

// Which positions of a forward call need logits: all of them (scoring a text) or only the
// last (choosing the next token).
enum class Logits { all, last };

template <LinearLayer Linear>
class Transformer {
public:
    using linear_type = Linear;

    Transformer(Config config, FloatTensors tensors, std::vector<Block<Linear>> blocks)
        : config_(config), rms_final_(std::move(tensors.rms_final)), blocks_(std::move(blocks)) {
        const std::string where = "llama::Transformer: ";
        const auto require = [&](const std::string& what, std::size_t expected, std::size_t found) {
            if (expected != found) {
                throw std::invalid_argument(where + what + " has " + std::to_string(found) + ", the config needs " +
                                            std::to_string(expected));
            }
        };
        const std::size_t table = config_.vocab_size * config_.dim;
        require("token_embedding (floats)", table, tensors.token_embedding.size());
        require("rms_final (floats)", config_.dim, rms_final_.size());
        require("wcls (floats)", config_.shared_classifier ? 0 : table, tensors.wcls.size());
        require("block count", config_.n_layers, blocks_.size());
        for (std::size_t l = 0; l < blocks_.size(); ++l) {
            const std::string layer = "layer " + std::to_string(l) + " ";
            require(layer + "rms_att (floats)", config_.dim, blocks_[l].rms_att.size());
            require(layer + "rms_ffn (floats)", config_.dim, blocks_[l].rms_ffn.size());
            for (Projection p : projections) {
                const auto [rows, cols] = projection_shape(config_, p);
                const Linear& linear = blocks_[l].projection(p);
                require(layer + projection_name(p) + " out_features", rows, linear.out_features());
                require(layer + projection_name(p) + " in_features", cols, linear.in_features());
            }
        }
        // A tied classifier is the embedding table itself: it is kept once, in the classifier.
        if (config_.shared_classifier) {
            classifier_ = DenseLinear(std::move(tensors.token_embedding), config_.vocab_size, config_.dim);
        } else {
            classifier_ = DenseLinear(std::move(tensors.wcls), config_.vocab_size, config_.dim);
            embedding_ = std::move(tensors.token_embedding);
        }
    }

    // Converts each projection of a float checkpoint with make_linear(weights, layer, projection).
    template <class MakeLinear>
    static Transformer from_checkpoint(const Checkpoint& ckpt, MakeLinear&& make_linear) {
        const Config& c = ckpt.config();
        std::vector<Block<Linear>> blocks(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const auto att = ckpt.rms_att(l);
            const auto ffn = ckpt.rms_ffn(l);
            blocks[l].rms_att.assign(att.begin(), att.end());
            blocks[l].rms_ffn.assign(ffn.begin(), ffn.end());
            for (Projection p : projections) {
                blocks[l].projection(p) = make_linear(checkpoint_projection(ckpt, l, p), l, p);
            }
        }
        const auto& t = ckpt.tensors();
        return Transformer(c, FloatTensors{t.token_embedding, t.rms_final, t.wcls}, std::move(blocks));
    }

    [[nodiscard]] const Config& config() const noexcept { return config_; }
    [[nodiscard]] const std::vector<Block<Linear>>& blocks() const noexcept { return blocks_; }
    [[nodiscard]] std::span<const float> rms_final() const noexcept { return rms_final_; }
    [[nodiscard]] MatrixView<const float> classifier() const { return classifier_.weights(); }
    [[nodiscard]] const DenseLinear& classifier_layer() const noexcept { return classifier_; }
    [[nodiscard]] MatrixView<const float> token_embedding() const {
        if (config_.shared_classifier) return classifier_.weights();
        return {std::span<const float>(embedding_), config_.vocab_size, config_.dim};
    }

    // Training updates the float parameters and the projections in place; every shape stays as
    // constructed. With a tied classifier, classifier() and token_embedding() are one table.
    [[nodiscard]] std::span<Block<Linear>> blocks() noexcept { return blocks_; }
    [[nodiscard]] std::span<float> rms_final() noexcept { return rms_final_; }
    [[nodiscard]] MatrixView<float> classifier() noexcept { return classifier_.weights(); }
    [[nodiscard]] MatrixView<float> token_embedding() noexcept {
        if (config_.shared_classifier) return classifier_.weights();
        return {std::span<float>(embedding_), config_.vocab_size, config_.dim};
    }

    // Runs tokens at positions start .. start + n - 1, appending their keys and values to the
    // session's cache (which must hold positions 0 .. start - 1 from earlier calls). Every
    // projection runs once over the whole batch (the layers' GEMM path). Returns the session's
    // logits, valid until its next forward(): one row per token, or one row for the last token.
    SessionLogits forward(std::span<const int> tokens, std::size_t start, Session& s,
                          Logits which = Logits::all) const {
        const Config& c = config_;
        const std::size_t n = tokens.size();
        if (s.config() != c) throw std::invalid_argument("llama::Transformer::forward: session made for another model");
        if (n == 0) throw std::invalid_argument("llama::Transformer::forward: no tokens");
        if (start > s.filled()) {
            throw std::invalid_argument("llama::Transformer::forward: start position " + std::to_string(start) +
                                        " leaves a gap after the " + std::to_string(s.filled()) + " cached positions");
        }
        if (n > s.capacity() - start) {
            throw std::out_of_range("llama::Transformer::forward: positions " + std::to_string(start) + ".." +
                                    std::to_string(start + n - 1) + " exceed the session's capacity " +
                                    std::to_string(s.capacity()) + " (the model's seq_len is " +
                                    std::to_string(c.seq_len) + ")");
        }
        check_vocabulary(tokens, c.vocab_size, "llama::Transformer::forward");
        const auto x = Session::rows_of(s.x_, n, c.dim);
        embed(tokens, x);
        // The angles depend on the position only: once per token, shared by every layer.
        const auto rotation = Session::rows_of(s.rotation_, n, c.head_size());
        for (std::size_t t = 0; t < n; ++t) set_rotation(rotation.row(t), start + t, c.rope_theta);
        // The residual stream goes x -> mid -> x; normed_ and gate_ are reused once dead; no
        // inverse is kept (no backward follows); one softmax row of scratch serves every head.
        const auto normed = Session::rows_of(s.normed_, n, c.dim);
        const auto gate = Session::rows_of(s.gate_, n, c.hidden_dim);
        BlockRows rows{.rotation = rotation,
                       .input = x,
                       .att_normed = normed,
                       .att_inverse = {},
                       .q = Session::rows_of(s.q_, n, c.dim),
                       .keys = {},
                       .values = {},
                       .attended = Session::rows_of(s.attended_, n, c.dim),
                       .mid = Session::rows_of(s.mid_, n, c.dim),
                       .ffn_normed = normed,
                       .ffn_inverse = {},
                       .gate = gate,
                       .up = Session::rows_of(s.up_, n, c.hidden_dim),
                       .activation = gate,
                       .output = x};
        const std::span<float> scores(s.scores_);
        const auto probabilities = [&](std::size_t, std::size_t t) { return scores.first(start + t + 1); };
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            rows.keys = s.keys(l, start + n);
            rows.values = s.values(l, start + n);
            block_forward(blocks_[l], c, rows, probabilities);
        }
        s.filled_ = start + n;

        const std::size_t scored = which == Logits::all ? n : 1;
        classify(last_rows(x, scored), last_rows(normed, scored), {},
                 Session::rows_of(s.logits_, scored, c.vocab_size));
        return s.logits();
    }

    // Copies each token's embedding row into a row of x; the tokens must be in the vocabulary.
    void embed(std::span<const int> tokens, MatrixView<float> x) const {
        const MatrixView<const float> table = token_embedding();
        for (std::size_t t = 0; t < tokens.size(); ++t)
            std::ranges::copy(table.row(std::size_t(tokens[t])), x.row(t).begin());
    }

    // The final RMSNorm (inverse as in rms_norm) and the classifier over rows of the residual stream.
    void classify(MatrixView<const float> hidden, MatrixView<float> normed, std::span<float> inverse,
                  MatrixView<float> logits) const {
        rms_norm(hidden, rms_final_, config_.norm_epsilon, normed, inverse);
        classifier_.forward(normed, logits);
    }

private:
    Config config_;
    std::vector<float> rms_final_;
    std::vector<Block<Linear>> blocks_;
    DenseLinear classifier_;        // wcls, or the token embedding when tied
    std::vector<float> embedding_;  // the token embedding when untied; empty when tied
};

}  // namespace multibool::llama
