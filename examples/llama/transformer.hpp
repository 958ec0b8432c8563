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

// The float tensors every variant of the model keeps as they are.
struct FloatTensors {
    std::vector<float> token_embedding;  // [vocab, dim]
    std::vector<float> rms_final;        // [dim]
    std::vector<float> wcls;             // [vocab, dim]; empty when the classifier is the embedding
};

// The per-sequence state: the KV cache and scratch buffers. One per concurrent sequence; the
// model itself is read-only while it runs, so threads share it. The cache holds `capacity`
// positions (at most seq_len), so scoring 256-token chunks does not pay for the model's whole
// context, and it remembers how many positions are filled, so a call cannot read unset keys.
class Session {
public:
    explicit Session(const Config& c) : Session(c, c.seq_len) {}
    Session(const Config& c, std::size_t capacity) : config_(c), capacity_(capacity) {
        if (capacity == 0 || capacity > c.seq_len) {
            throw std::invalid_argument("llama::Session: capacity " + std::to_string(capacity) +
                                        " outside 1..seq_len (" + std::to_string(c.seq_len) + ")");
        }
        const std::size_t cache = checked_product("llama::Session", c.n_layers * capacity, c.kv_dim());
        keys_.resize(cache);
        values_.resize(cache);
        scores_.resize(capacity);
    }

    [[nodiscard]] const Config& config() const noexcept { return config_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    // Positions 0 .. filled() - 1 hold keys and values.
    [[nodiscard]] std::size_t filled() const noexcept { return filled_; }

private:
    template <LinearLayer>
    friend class Transformer;

    [[nodiscard]] std::span<float> key(std::size_t layer, std::size_t pos) noexcept {
        return std::span<float>(keys_).subspan((layer * capacity_ + pos) * config_.kv_dim(), config_.kv_dim());
    }
    [[nodiscard]] std::span<float> value(std::size_t layer, std::size_t pos) noexcept {
        return std::span<float>(values_).subspan((layer * capacity_ + pos) * config_.kv_dim(), config_.kv_dim());
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
    std::vector<float> x_, normed_, q_, k_, v_, attended_, projected_, gate_, up_, logits_;
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
    // projection runs once over the whole batch (the layers' GEMM path). Returns the logits:
    // one row per token, or one row for the last token.
    MatrixView<const float> forward(std::span<const int> tokens, std::size_t start, Session& s,
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
        auto x = Session::rows_of(s.x_, n, c.dim);
        for (std::size_t t = 0; t < n; ++t) {
            if (tokens[t] < 0 || std::size_t(tokens[t]) >= c.vocab_size) {
                throw std::out_of_range("llama::Transformer::forward: token " + std::to_string(tokens[t]) +
                                        " at index " + std::to_string(t) + " is outside the vocabulary of " +
                                        std::to_string(c.vocab_size));
            }
            std::ranges::copy(embedding_row(std::size_t(tokens[t])), x.row(t).begin());
        }
        auto normed = Session::rows_of(s.normed_, n, c.dim);
        auto q = Session::rows_of(s.q_, n, c.dim);
        auto k = Session::rows_of(s.k_, n, c.kv_dim());
        auto v = Session::rows_of(s.v_, n, c.kv_dim());
        auto attended = Session::rows_of(s.attended_, n, c.dim);
        auto projected = Session::rows_of(s.projected_, n, c.dim);
        auto gate = Session::rows_of(s.gate_, n, c.hidden_dim);
        // The angles depend on the position only: once per token, shared by every layer.
        auto rotation = Session::rows_of(s.rotation_, n, c.head_size());
        for (std::size_t t = 0; t < n; ++t) set_rotation(rotation.row(t), start + t);
        auto up = Session::rows_of(s.up_, n, c.hidden_dim);

        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const Block<Linear>& b = blocks_[l];
            rms_norm(x, b.rms_att, normed);
            b.wq.forward(normed, q);
            b.wk.forward(normed, k);
            b.wv.forward(normed, v);
            for (std::size_t t = 0; t < n; ++t) {
                rotate(q.row(t), rotation.row(t));
                rotate(k.row(t), rotation.row(t));
                std::ranges::copy(k.row(t), s.key(l, start + t).begin());
                std::ranges::copy(v.row(t), s.value(l, start + t).begin());
            }
            for (std::size_t t = 0; t < n; ++t) attend(s, l, q.row(t), start + t, attended.row(t));
            b.wo.forward(attended, projected);
            add(projected, x);

            rms_norm(x, b.rms_ffn, normed);
            b.w1.forward(normed, gate);
            b.w3.forward(normed, up);
            for (std::size_t e = 0; e < gate.data().size(); ++e) {
                gate.data()[e] = swiglu(gate.data()[e], up.data()[e]);
            }
            b.w2.forward(gate, projected);
            add(projected, x);
        }

        s.filled_ = start + n;

        const std::size_t first = which == Logits::all ? 0 : n - 1;
        const std::size_t scored = n - first;
        const MatrixView<const float> last_rows(x.data().subspan(first * c.dim), scored, c.dim);
        auto final_normed = MatrixView<float>(normed.data().first(scored * c.dim), scored, c.dim);
        rms_norm(last_rows, rms_final_, final_normed);
        auto logits = Session::rows_of(s.logits_, scored, c.vocab_size);
        classifier_.forward(final_normed, logits);
        return logits;
    }

private:
    [[nodiscard]] std::span<const float> embedding_row(std::size_t token) const { return token_embedding().row(token); }

    static void add(MatrixView<const float> delta, MatrixView<float> x) {
        for (std::size_t e = 0; e < x.data().size(); ++e) x.data()[e] += delta.data()[e];
    }

    // Causal grouped-query attention of one query row at position pos over cached positions
    // 0..pos; query head h reads key/value head h / (n_heads / n_kv_heads).
    void attend(Session& s, std::size_t layer, std::span<const float> q, std::size_t pos, std::span<float> out) const {
        const std::size_t hs = config_.head_size();
        const std::size_t heads_per_kv = config_.n_heads / config_.n_kv_heads;
        const float inv_sqrt = 1.0f / std::sqrt(float(hs));
        std::span<float> scores = std::span<float>(s.scores_).first(pos + 1);
        for (std::size_t h = 0; h < config_.n_heads; ++h) {
            const std::size_t kv_offset = (h / heads_per_kv) * hs;
            const auto qh = q.subspan(h * hs, hs);
            for (std::size_t p = 0; p <= pos; ++p) {
                const auto kh = s.key(layer, p).subspan(kv_offset, hs);
                float dot = 0.0f;
                for (std::size_t i = 0; i < hs; ++i) dot += qh[i] * kh[i];
                scores[p] = dot * inv_sqrt;
            }
            softmax(scores);
            const auto oh = out.subspan(h * hs, hs);
            std::ranges::fill(oh, 0.0f);
            for (std::size_t p = 0; p <= pos; ++p) {
                const auto vh = s.value(layer, p).subspan(kv_offset, hs);
                for (std::size_t i = 0; i < hs; ++i) oh[i] += scores[p] * vh[i];
            }
        }
    }

    Config config_;
    std::vector<float> rms_final_;
    std::vector<Block<Linear>> blocks_;
    DenseLinear classifier_;        // wcls, or the token embedding when tied
    std::vector<float> embedding_;  // the token embedding when untied; empty when tied
};

}  // namespace multibool::llama
