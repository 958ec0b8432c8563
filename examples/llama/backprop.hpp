#pragma once
// Backpropagation through the LLaMA example model, written once over the linear-layer type: the
// same code trains float projections (checked against finite differences) and multi-Boolean ones.
//
// A TrainingPass runs a batch of sequences (each `length` tokens at positions 0 .. length-1 with
// its own causal attention) and keeps what the backward pass needs. backward() then turns
// dL/dlogits and dL/d(hidden states) into
//   * each projection's input X and output gradient dY over the whole batch (the weight gradient
//     is dY^T X: a float layer forms it, a Boolean layer feeds it tile by tile to a flip policy),
//   * the float parameters' gradients (embedding, norms, classifier) when asked.
// Sequences are shared among threads; every float is computed by one thread in a fixed order and
// cross-sequence sums run in sequence order, so results do not depend on the thread count.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/operations.hpp"
#include "llama/transformer.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/nn/linear_layer.hpp"

namespace multibool::llama {

// Gradients of the float parameters, in the model's layouts.
struct FloatGradients {
    std::vector<float> token_embedding;  // [vocab, dim]; a tied classifier's share included
    std::vector<float> classifier;       // [vocab, dim] when untied, else empty
    std::vector<float> rms_att;          // [layers, dim]
    std::vector<float> rms_ffn;          // [layers, dim]
    std::vector<float> rms_final;        // [dim]
};

template <LinearLayer Linear>
class TrainingPass {
public:
    TrainingPass(const Config& c, std::size_t sequences, std::size_t length)
        : config_(c), sequences_(sequences), length_(length), rotation_(length * c.head_size()) {
        if (sequences == 0 || length == 0 || length > c.seq_len) {
            throw std::invalid_argument("TrainingPass: need at least one sequence of 1.." + std::to_string(c.seq_len) +
                                        " tokens, got " + std::to_string(sequences) + " of " +
                                        std::to_string(length));
        }
        const std::size_t t = tokens();
        for (std::size_t p = 0; p < length; ++p) set_rotation(rotation_row(p), p);
        layers_.resize(c.n_layers);
        for (LayerTape& l : layers_) {
            l.input.resize(t * c.dim);
            l.att_inverse.resize(t);
            l.att_normed.resize(t * c.dim);
            l.q.resize(t * c.dim);
            l.k.resize(t * c.kv_dim());
            l.v.resize(t * c.kv_dim());
            l.probabilities.resize(sequences * c.n_heads * length * length);
            l.attended.resize(t * c.dim);
            l.mid.resize(t * c.dim);
            l.ffn_inverse.resize(t);
            l.ffn_normed.resize(t * c.dim);
            l.gate.resize(t * c.hidden_dim);
            l.up.resize(t * c.hidden_dim);
            l.activation.resize(t * c.hidden_dim);
            l.dq.resize(t * c.dim);
            l.dk.resize(t * c.kv_dim());
            l.dv.resize(t * c.kv_dim());
            l.dwo.resize(t * c.dim);
            l.dw1.resize(t * c.hidden_dim);
            l.dw3.resize(t * c.hidden_dim);
            l.dw2.resize(t * c.dim);
        }
        final_input_.resize(t * c.dim);
        final_inverse_.resize(t);
        final_normed_.resize(t * c.dim);
        logits_.resize(t * c.vocab_size);
        input_gradient_.resize(t * c.dim);
    }

    [[nodiscard]] const Config& config() const noexcept { return config_; }
    [[nodiscard]] std::size_t sequences() const noexcept { return sequences_; }
    [[nodiscard]] std::size_t length() const noexcept { return length_; }
    [[nodiscard]] std::size_t tokens() const noexcept { return sequences_ * length_; }

    // tokens: sequences() * length() token ids, sequence after sequence.
    void forward(const Transformer<Linear>& model, std::span<const int> tokens, std::size_t threads) {
        check_model(model, "forward");
        if (tokens.size() != this->tokens()) {
            throw std::invalid_argument("TrainingPass::forward: " + std::to_string(tokens.size()) +
                                        " tokens for a pass of " + std::to_string(sequences_) + " x " +
                                        std::to_string(length_));
        }
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            if (tokens[t] < 0 || std::size_t(tokens[t]) >= config_.vocab_size) {
                throw std::out_of_range("TrainingPass::forward: token " + std::to_string(tokens[t]) + " at index " +
                                        std::to_string(t) + " is outside the vocabulary of " +
                                        std::to_string(config_.vocab_size));
            }
        }
        tokens_.assign(tokens.begin(), tokens.end());
        parallel_for(threads, sequences_, 1, [&](std::size_t begin, std::size_t end) {
            for (std::size_t s = begin; s < end; ++s) forward_sequence(model, s);
        });
    }

    [[nodiscard]] MatrixView<const float> logits() const { return view(logits_, config_.vocab_size); }
    // The residual stream after block `layer` (what the next block reads).
    [[nodiscard]] MatrixView<const float> hidden(std::size_t layer) const {
        return layer + 1 < config_.n_layers ? view(layers_[layer + 1].input, config_.dim)
                                            : view(final_input_, config_.dim);
    }

    // dlogits: dL/dlogits (tokens x vocab); hidden_gradients: empty, or one view per block that is
    // dL/dhidden(l) (tokens x dim) or empty. Fills the projections' output gradients and, when
    // float_gradients is given, the float parameters' gradients.
    void backward(const Transformer<Linear>& model, MatrixView<const float> dlogits,
                  std::span<const MatrixView<const float>> hidden_gradients, std::size_t threads,
                  FloatGradients* float_gradients = nullptr) {
        check_model(model, "backward");
        if (tokens_.size() != tokens()) throw std::logic_error("TrainingPass::backward: no forward pass to go back through");
        const auto wrong = [](MatrixView<const float> v, std::size_t rows, std::size_t cols) {
            return v.rows() != rows || v.cols() != cols;
        };
        if (wrong(dlogits, tokens(), config_.vocab_size)) {
            throw std::invalid_argument("TrainingPass::backward: dlogits is " + std::to_string(dlogits.rows()) + "x" +
                                        std::to_string(dlogits.cols()) + ", expected " + std::to_string(tokens()) +
                                        "x" + std::to_string(config_.vocab_size));
        }
        if (!hidden_gradients.empty() && hidden_gradients.size() != config_.n_layers) {
            throw std::invalid_argument("TrainingPass::backward: " + std::to_string(hidden_gradients.size()) +
                                        " hidden-state gradients for " + std::to_string(config_.n_layers) + " blocks");
        }
        for (std::size_t l = 0; l < hidden_gradients.size(); ++l) {
            if (!hidden_gradients[l].data().empty() && wrong(hidden_gradients[l], tokens(), config_.dim)) {
                throw std::invalid_argument("TrainingPass::backward: the gradient of hidden state " +
                                            std::to_string(l) + " is not " + std::to_string(tokens()) + "x" +
                                            std::to_string(config_.dim));
            }
        }
        const std::size_t d = config_.dim;
        const bool norms = float_gradients != nullptr;
        // Per-sequence norm gradients, summed in sequence order afterwards.
        std::vector<float> norm_parts(norms ? sequences_ * (2 * config_.n_layers + 1) * d : 0, 0.0f);
        parallel_for(threads, sequences_, 1, [&](std::size_t begin, std::size_t end) {
            BackwardScratch scratch(config_, length_);  // once per thread, not per sequence
            for (std::size_t s = begin; s < end; ++s) {
                const std::span<float> part =
                    norms ? std::span<float>(norm_parts).subspan(s * (2 * config_.n_layers + 1) * d,
                                                                 (2 * config_.n_layers + 1) * d)
                          : std::span<float>();
                backward_sequence(model, dlogits, hidden_gradients, s, part, scratch);
            }
        });
        if (norms) collect_float_gradients(dlogits, norm_parts, threads, *float_gradients);
    }

    // The input X (tokens x in) and output gradient dY (tokens x out) of a projection over the
    // batch, after backward(): its weight gradient is dY^T X.
    [[nodiscard]] MatrixView<const float> projection_input(std::size_t layer, Projection p) const {
        const LayerTape& l = layers_.at(layer);
        switch (p) {
            case Projection::wq:
            case Projection::wk:
            case Projection::wv:
                return view(l.att_normed, config_.dim);
            case Projection::wo:
                return view(l.attended, config_.dim);
            case Projection::w1:
            case Projection::w3:
                return view(l.ffn_normed, config_.dim);
            case Projection::w2:
                return view(l.activation, config_.hidden_dim);
        }
        throw std::logic_error("projection_input: unknown projection");
    }
    [[nodiscard]] MatrixView<const float> projection_output_gradient(std::size_t layer, Projection p) const {
        const LayerTape& l = layers_.at(layer);
        switch (p) {
            case Projection::wq:
                return view(l.dq, config_.dim);
            case Projection::wk:
                return view(l.dk, config_.kv_dim());
            case Projection::wv:
                return view(l.dv, config_.kv_dim());
            case Projection::wo:
                return view(l.dwo, config_.dim);
            case Projection::w1:
                return view(l.dw1, config_.hidden_dim);
            case Projection::w3:
                return view(l.dw3, config_.hidden_dim);
            case Projection::w2:
                return view(l.dw2, config_.dim);
        }
        throw std::logic_error("projection_output_gradient: unknown projection");
    }

private:
    // What one block's backward needs, for every token of the batch.
    struct LayerTape {
        std::vector<float> input, att_inverse, att_normed, q, k, v, probabilities, attended, mid, ffn_inverse,
            ffn_normed, gate, up, activation;
        std::vector<float> dq, dk, dv, dwo, dw1, dw3, dw2;  // projections' output gradients
    };

    // One sequence's working rows in the backward pass.
    struct BackwardScratch {
        BackwardScratch(const Config& c, std::size_t length)
            : normed_gradient(length * c.dim),
              dx(length * c.dim),
              wide(length * std::max(c.dim, c.hidden_dim)),
              hidden(length * c.hidden_dim),
              dscores(length) {}
        std::vector<float> normed_gradient, dx, wide, hidden, dscores;
    };

    void check_model(const Transformer<Linear>& model, const char* who) const {
        if (model.config() != config_) {
            throw std::invalid_argument(std::string("TrainingPass::") + who + ": the model has another config");
        }
    }

    [[nodiscard]] MatrixView<const float> view(const std::vector<float>& v, std::size_t cols) const {
        return {std::span<const float>(v), v.size() / cols, cols};
    }
    // Rows of sequence s.
    [[nodiscard]] MatrixView<float> rows(std::vector<float>& v, std::size_t cols, std::size_t s) {
        return {std::span<float>(v).subspan(s * length_ * cols, length_ * cols), length_, cols};
    }
    [[nodiscard]] std::span<float> rotation_row(std::size_t pos) {
        return std::span<float>(rotation_).subspan(pos * config_.head_size(), config_.head_size());
    }
    // Softmax rows of head h of sequence s: length x length, row t filled up to t.
    [[nodiscard]] std::span<float> probability_row(LayerTape& l, std::size_t s, std::size_t h, std::size_t t) {
        return std::span<float>(l.probabilities).subspan(((s * config_.n_heads + h) * length_ + t) * length_, t + 1);
    }

    void forward_sequence(const Transformer<Linear>& model, std::size_t s) {
        const Config& c = config_;
        const std::size_t hs = c.head_size();
        const std::size_t heads_per_kv = c.n_heads / c.n_kv_heads;
        const float inv_sqrt = 1.0f / std::sqrt(float(hs));
        const MatrixView<const float> embedding = model.token_embedding();
        {
            auto x = rows(layers_[0].input, c.dim, s);
            for (std::size_t t = 0; t < length_; ++t) {
                std::ranges::copy(embedding.row(std::size_t(tokens_[s * length_ + t])), x.row(t).begin());
            }
        }
        for (std::size_t layer = 0; layer < c.n_layers; ++layer) {
            const Block<Linear>& b = model.blocks()[layer];
            LayerTape& l = layers_[layer];
            const auto x = rows(l.input, c.dim, s);
            const auto normed = rows(l.att_normed, c.dim, s);
            for (std::size_t t = 0; t < length_; ++t) {
                l.att_inverse[s * length_ + t] = rms_norm_row(x.row(t), b.rms_att, normed.row(t));
            }
            const auto q = rows(l.q, c.dim, s);
            const auto k = rows(l.k, c.kv_dim(), s);
            const auto v = rows(l.v, c.kv_dim(), s);
            b.wq.forward(normed, q);
            b.wk.forward(normed, k);
            b.wv.forward(normed, v);
            for (std::size_t t = 0; t < length_; ++t) {
                rotate(q.row(t), rotation_row(t));
                rotate(k.row(t), rotation_row(t));
            }
            const auto attended = rows(l.attended, c.dim, s);
            for (std::size_t h = 0; h < c.n_heads; ++h) {
                const std::size_t kv = (h / heads_per_kv) * hs;
                for (std::size_t t = 0; t < length_; ++t) {
                    const auto qh = q.row(t).subspan(h * hs, hs);
                    const auto scores = probability_row(l, s, h, t);
                    for (std::size_t p = 0; p <= t; ++p) {
                        const auto kh = k.row(p).subspan(kv, hs);
                        float dot = 0.0f;
                        for (std::size_t i = 0; i < hs; ++i) dot += qh[i] * kh[i];
                        scores[p] = dot * inv_sqrt;
                    }
                    softmax(scores);
                    const auto oh = attended.row(t).subspan(h * hs, hs);
                    std::ranges::fill(oh, 0.0f);
                    for (std::size_t p = 0; p <= t; ++p) {
                        const auto vh = v.row(p).subspan(kv, hs);
                        for (std::size_t i = 0; i < hs; ++i) oh[i] += scores[p] * vh[i];
                    }
                }
            }
            const auto mid = rows(l.mid, c.dim, s);
            b.wo.forward(attended, mid);
            for (std::size_t e = 0; e < mid.data().size(); ++e) mid.data()[e] += x.data()[e];

            const auto ffn_normed = rows(l.ffn_normed, c.dim, s);
            for (std::size_t t = 0; t < length_; ++t) {
                l.ffn_inverse[s * length_ + t] = rms_norm_row(mid.row(t), b.rms_ffn, ffn_normed.row(t));
            }
            const auto gate = rows(l.gate, c.hidden_dim, s);
            const auto up = rows(l.up, c.hidden_dim, s);
            const auto activation = rows(l.activation, c.hidden_dim, s);
            b.w1.forward(ffn_normed, gate);
            b.w3.forward(ffn_normed, up);
            for (std::size_t e = 0; e < gate.data().size(); ++e) {
                activation.data()[e] = swiglu(gate.data()[e], up.data()[e]);
            }
            const auto next = layer + 1 < c.n_layers ? rows(layers_[layer + 1].input, c.dim, s)
                                                     : rows(final_input_, c.dim, s);
            b.w2.forward(activation, next);
            for (std::size_t e = 0; e < next.data().size(); ++e) next.data()[e] += mid.data()[e];
        }
        const auto x = rows(final_input_, c.dim, s);
        const auto normed = rows(final_normed_, c.dim, s);
        for (std::size_t t = 0; t < length_; ++t) {
            final_inverse_[s * length_ + t] = rms_norm_row(x.row(t), model.rms_final(), normed.row(t));
        }
        model.classifier_layer().forward(normed, rows(logits_, c.vocab_size, s));
    }

    // RMSNorm's backward for one row: out = w * x * r with r = (mean(x^2) + eps)^(-1/2), so
    // dx_j = r w_j g_j - r^3 x_j (sum_i g_i w_i x_i) / n and dw_j = g_j r x_j. Adds to dx and dw.
    static void rms_norm_backward_row(std::span<const float> x, float r, std::span<const float> w,
                                      std::span<const float> g, std::span<float> dx, std::span<float> dw) noexcept {
        float dot = 0.0f;
        for (std::size_t j = 0; j < x.size(); ++j) dot += g[j] * w[j] * x[j];
        const float c = r * r * r * dot / float(x.size());
        for (std::size_t j = 0; j < x.size(); ++j) dx[j] += r * w[j] * g[j] - c * x[j];
        if (!dw.empty()) {
            for (std::size_t j = 0; j < x.size(); ++j) dw[j] += g[j] * r * x[j];
        }
    }

    void backward_sequence(const Transformer<Linear>& model, MatrixView<const float> dlogits,
                           std::span<const MatrixView<const float>> hidden_gradients, std::size_t s,
                           std::span<float> norm_gradients, BackwardScratch& buffers) {
        const Config& c = config_;
        const std::size_t d = c.dim;
        const std::size_t hs = c.head_size();
        const std::size_t heads_per_kv = c.n_heads / c.n_kv_heads;
        const float inv_sqrt = 1.0f / std::sqrt(float(hs));
        const auto norm_part = [&](std::size_t index) {
            return norm_gradients.empty() ? std::span<float>() : norm_gradients.subspan(index * d, d);
        };
        const MatrixView<const float> sequence_dlogits(dlogits.data().subspan(s * length_ * c.vocab_size,
                                                                              length_ * c.vocab_size),
                                                       length_, c.vocab_size);
        std::ranges::fill(buffers.dx, 0.0f);
        const MatrixView<float> dnormed(std::span<float>(buffers.normed_gradient), length_, d);
        const MatrixView<float> dx(std::span<float>(buffers.dx), length_, d);
        const auto scratch = [&](std::size_t cols) {
            return MatrixView<float>(std::span<float>(buffers.wide).first(length_ * cols), length_, cols);
        };
        const auto add_into = [](MatrixView<const float> from, MatrixView<float> to) {
            for (std::size_t e = 0; e < to.data().size(); ++e) to.data()[e] += from.data()[e];
        };

        model.classifier_layer().backward_input(sequence_dlogits, dnormed);
        {
            const auto x = rows(final_input_, d, s);
            for (std::size_t t = 0; t < length_; ++t) {
                rms_norm_backward_row(x.row(t), final_inverse_[s * length_ + t], model.rms_final(), dnormed.row(t),
                                      dx.row(t), norm_part(2 * c.n_layers));
            }
        }
        for (std::size_t layer = c.n_layers; layer-- > 0;) {
            const Block<Linear>& b = model.blocks()[layer];
            LayerTape& l = layers_[layer];
            if (!hidden_gradients.empty() && !hidden_gradients[layer].data().empty()) {
                const auto extra = hidden_gradients[layer].data().subspan(s * length_ * d, length_ * d);
                for (std::size_t e = 0; e < extra.size(); ++e) dx.data()[e] += extra[e];
            }
            // Feed-forward: next = mid + w2(swiglu(w1 n, w3 n)), n = rmsnorm(mid).
            std::ranges::copy(dx.data(), rows(l.dw2, d, s).data().begin());
            const MatrixView<float> dactivation(std::span<float>(buffers.hidden), length_, c.hidden_dim);
            b.w2.backward_input(dx, dactivation);
            {
                const auto gate = rows(l.gate, c.hidden_dim, s);
                const auto up = rows(l.up, c.hidden_dim, s);
                const auto dgate = rows(l.dw1, c.hidden_dim, s);
                const auto dup = rows(l.dw3, c.hidden_dim, s);
                for (std::size_t e = 0; e < gate.data().size(); ++e) {
                    const float g = gate.data()[e];
                    const float sigmoid = 1.0f / (1.0f + std::exp(-g));
                    const float da = dactivation.data()[e];
                    dup.data()[e] = da * g * sigmoid;
                    dgate.data()[e] = da * up.data()[e] * sigmoid * (1.0f + g * (1.0f - sigmoid));
                }
                b.w1.backward_input(dgate, dnormed);
                b.w3.backward_input(dup, scratch(d));
                add_into(scratch(d), dnormed);
            }
            {
                const auto mid = rows(l.mid, d, s);
                for (std::size_t t = 0; t < length_; ++t) {
                    rms_norm_backward_row(mid.row(t), l.ffn_inverse[s * length_ + t], b.rms_ffn, dnormed.row(t),
                                          dx.row(t), norm_part(c.n_layers + layer));
                }
            }
            // Attention: mid = input + wo(attention(rope(wq n), rope(wk n), wv n)), n = rmsnorm(input).
            std::ranges::copy(dx.data(), rows(l.dwo, d, s).data().begin());
            const MatrixView<float> dattended = scratch(d);
            b.wo.backward_input(dx, dattended);
            const auto q = rows(l.q, d, s);
            const auto k = rows(l.k, c.kv_dim(), s);
            const auto v = rows(l.v, c.kv_dim(), s);
            const auto dq = rows(l.dq, d, s);
            const auto dk = rows(l.dk, c.kv_dim(), s);
            const auto dv = rows(l.dv, c.kv_dim(), s);
            std::ranges::fill(dq.data(), 0.0f);
            std::ranges::fill(dk.data(), 0.0f);
            std::ranges::fill(dv.data(), 0.0f);
            const std::span<float> dscores(buffers.dscores);
            for (std::size_t h = 0; h < c.n_heads; ++h) {
                const std::size_t kv = (h / heads_per_kv) * hs;
                for (std::size_t t = 0; t < length_; ++t) {
                    const auto probabilities = probability_row(l, s, h, t);
                    const auto dout = dattended.row(t).subspan(h * hs, hs);
                    // Softmax backward: dscore_p = P_p (dP_p - sum_r P_r dP_r), dP_p = dout . v_p.
                    float weighted = 0.0f;
                    for (std::size_t p = 0; p <= t; ++p) {
                        const auto vh = v.row(p).subspan(kv, hs);
                        const auto dvh = dv.row(p).subspan(kv, hs);
                        float dp = 0.0f;
                        for (std::size_t i = 0; i < hs; ++i) {
                            dp += dout[i] * vh[i];
                            dvh[i] += probabilities[p] * dout[i];
                        }
                        dscores[p] = dp;
                        weighted += probabilities[p] * dp;
                    }
                    const auto qh = q.row(t).subspan(h * hs, hs);
                    const auto dqh = dq.row(t).subspan(h * hs, hs);
                    for (std::size_t p = 0; p <= t; ++p) {
                        const float ds = probabilities[p] * (dscores[p] - weighted) * inv_sqrt;
                        const auto kh = k.row(p).subspan(kv, hs);
                        const auto dkh = dk.row(p).subspan(kv, hs);
                        for (std::size_t i = 0; i < hs; ++i) {
                            dqh[i] += ds * kh[i];
                            dkh[i] += ds * qh[i];
                        }
                    }
                }
            }
            for (std::size_t t = 0; t < length_; ++t) {
                rotate(dq.row(t), rotation_row(t), true);
                rotate(dk.row(t), rotation_row(t), true);
            }
            b.wq.backward_input(dq, dnormed);
            b.wk.backward_input(dk, scratch(d));
            add_into(scratch(d), dnormed);
            b.wv.backward_input(dv, scratch(d));
            add_into(scratch(d), dnormed);
            const auto input = rows(l.input, d, s);
            for (std::size_t t = 0; t < length_; ++t) {
                rms_norm_backward_row(input.row(t), l.att_inverse[s * length_ + t], b.rms_att, dnormed.row(t),
                                      dx.row(t), norm_part(layer));
            }
        }
        std::ranges::copy(dx.data(), rows(input_gradient_, d, s).data().begin());
    }

    void collect_float_gradients(MatrixView<const float> dlogits, std::span<const float> norm_parts,
                                 std::size_t threads, FloatGradients& out) const {
        const Config& c = config_;
        const std::size_t d = c.dim;
        const std::size_t per_sequence = (2 * c.n_layers + 1) * d;
        std::vector<float> norms(per_sequence, 0.0f);
        for (std::size_t s = 0; s < sequences_; ++s) {
            for (std::size_t e = 0; e < per_sequence; ++e) norms[e] += norm_parts[s * per_sequence + e];
        }
        out.rms_att.assign(norms.begin(), norms.begin() + c.n_layers * d);
        out.rms_ffn.assign(norms.begin() + c.n_layers * d, norms.begin() + 2 * c.n_layers * d);
        out.rms_final.assign(norms.begin() + 2 * c.n_layers * d, norms.end());

        // Classifier: dlogits^T final_normed, each row summed over tokens in order.
        std::vector<float> classifier(c.vocab_size * d, 0.0f);
        parallel_for(threads, c.vocab_size, 16, [&](std::size_t begin, std::size_t end) {
            for (std::size_t v = begin; v < end; ++v) {
                float* row = classifier.data() + v * d;
                for (std::size_t t = 0; t < tokens(); ++t) {
                    const float g = dlogits(t, v);
                    if (g == 0.0f) continue;
                    const float* x = final_normed_.data() + t * d;
                    for (std::size_t j = 0; j < d; ++j) row[j] += g * x[j];
                }
            }
        });
        std::vector<float> embedding(c.vocab_size * d, 0.0f);
        for (std::size_t t = 0; t < tokens(); ++t) {
            float* row = embedding.data() + std::size_t(tokens_[t]) * d;
            for (std::size_t j = 0; j < d; ++j) row[j] += input_gradient_[t * d + j];
        }
        if (c.shared_classifier) {
            for (std::size_t e = 0; e < embedding.size(); ++e) embedding[e] += classifier[e];
            out.classifier.clear();
        } else {
            out.classifier = std::move(classifier);
        }
        out.token_embedding = std::move(embedding);
    }

    Config config_;
    std::size_t sequences_;
    std::size_t length_;
    std::vector<float> rotation_;  // [position, head_size]
    std::vector<int> tokens_;
    std::vector<LayerTape> layers_;
    std::vector<float> final_input_, final_inverse_, final_normed_, logits_;
    std::vector<float> input_gradient_;  // dL/d(embedded tokens)
};

}  // namespace multibool::llama
