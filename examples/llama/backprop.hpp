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
#include "llama/collective.hpp"
#include "llama/operations.hpp"
#include "llama/transformer.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/matrix_view.hpp"
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

// Where each RMSNorm weight's gradient sits in one flat vector of size() floats, in FloatGradients'
// order: rms_att of every layer, rms_ffn of every layer, then rms_final, dim floats each.
struct NormGradientLayout {
    std::size_t layers = 0;
    std::size_t dim = 0;

    [[nodiscard]] std::size_t size() const noexcept { return (2 * layers + 1) * dim; }
    [[nodiscard]] std::size_t rms_att(std::size_t layer) const noexcept { return layer * dim; }
    [[nodiscard]] std::size_t rms_ffn(std::size_t layer) const noexcept { return (layers + layer) * dim; }
    [[nodiscard]] std::size_t rms_final() const noexcept { return 2 * layers * dim; }
    // The dim floats at offset of `all`; empty when `all` is (the norms' gradients are not wanted).
    [[nodiscard]] std::span<float> slot(std::span<float> all, std::size_t offset) const noexcept {
        return all.empty() ? all : all.subspan(offset, dim);
    }
};

template <LinearLayer Linear>
class TrainingPass {
public:
    TrainingPass(const Config& c, std::size_t sequences, std::size_t length)
        : config_(c), sequences_(sequences), length_(length), rotation_(length * c.head_size()) {
        if (sequences == 0 || length == 0 || length > c.seq_len) {
            throw std::invalid_argument("TrainingPass: need at least one sequence of 1.." + std::to_string(c.seq_len) +
                                        " tokens, got " + std::to_string(sequences) + " of " + std::to_string(length));
        }
        const std::size_t t = tokens();
        for (std::size_t p = 0; p < length; ++p) set_rotation(rotation_row(p), p, c.rope_theta);
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
        forward(model, tokens, threads, {0, sequences_});
    }
    // The same for the sequences of `share` only; the other sequences' rows are left as they were.
    void forward(const Transformer<Linear>& model, std::span<const int> tokens, std::size_t threads,
                 SequenceShare share) {
        check_model(model, "forward");
        if (tokens.size() != this->tokens()) {
            throw std::invalid_argument("TrainingPass::forward: " + std::to_string(tokens.size()) +
                                        " tokens for a pass of " + std::to_string(sequences_) + " x " +
                                        std::to_string(length_));
        }
        check_vocabulary(tokens, config_.vocab_size, "TrainingPass::forward");
        check_share(share, "forward");
        tokens_.assign(tokens.begin(), tokens.end());
        parallel_for(threads, share.last - share.first, 1, [&](std::size_t begin, std::size_t end) {
            for (std::size_t s = share.first + begin; s < share.first + end; ++s) forward_sequence(model, s);
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
        backward(model, dlogits, hidden_gradients, threads, {0, sequences_}, float_gradients != nullptr);
        if (float_gradients != nullptr) collect_float_gradients(dlogits, threads, *float_gradients);
    }

    // The backward pass of the sequences of `share` (forward() must have run them); with
    // `norm_gradients`, each of them also keeps its part of the norms' gradients for
    // collect_float_gradients(). Only rows of `share` of dlogits and hidden_gradients are read.
    void backward(const Transformer<Linear>& model, MatrixView<const float> dlogits,
                  std::span<const MatrixView<const float>> hidden_gradients, std::size_t threads, SequenceShare share,
                  bool norm_gradients) {
        check_model(model, "backward");
        check_share(share, "backward");
        if (tokens_.size() != tokens())
            throw std::logic_error("TrainingPass::backward: no forward pass to go back through");
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
        const std::size_t per_sequence = norm_layout().size();
        // Per-sequence norm gradients, summed in sequence order by collect_float_gradients.
        norm_parts_.assign(norm_gradients ? sequences_ * per_sequence : 0, 0.0f);
        parallel_for(threads, share.last - share.first, 1, [&](std::size_t begin, std::size_t end) {
            BackwardScratch scratch(config_, length_);  // once per thread, not per sequence
            for (std::size_t s = share.first + begin; s < share.first + end; ++s) {
                const std::span<float> part =
                    norm_gradients ? std::span<float>(norm_parts_).subspan(s * per_sequence, per_sequence)
                                   : std::span<float>();
                backward_sequence(model, dlogits, hidden_gradients, s, part, scratch);
            }
        });
    }

    // After each rank ran backward() on its share: every rank gets every sequence's rows of what
    // the weight-gradient tiles read (the projections' inputs and output gradients) and, when
    // the norms' gradients were kept, of what collect_float_gradients() reads besides dlogits.
    void gather(Collective& group) {
        if (group.ranks() == 1) return;
        const Config& c = config_;
        const auto rows_of = [&](std::vector<float>& v, std::size_t width) {
            group.gather_sequences(std::span<float>(v), sequences_, length_ * width);
        };
        for (LayerTape& l : layers_) {
            for (auto* v : {&l.att_normed, &l.attended, &l.ffn_normed, &l.dq, &l.dwo, &l.dw2}) rows_of(*v, c.dim);
            for (auto* v : {&l.dk, &l.dv}) rows_of(*v, c.kv_dim());
            for (auto* v : {&l.activation, &l.dw1, &l.dw3}) rows_of(*v, c.hidden_dim);
        }
        if (norm_parts_.empty()) return;
        group.gather_sequences(std::span<float>(norm_parts_), sequences_, norm_layout().size());
        rows_of(final_normed_, c.dim);
        rows_of(input_gradient_, c.dim);
    }

    // The float parameters' gradients over the whole batch, after backward() kept the norms'
    // parts of every sequence (and gather() brought them together).
    void collect_float_gradients(MatrixView<const float> dlogits, std::size_t threads, FloatGradients& out) const {
        if (norm_parts_.size() != sequences_ * norm_layout().size()) {
            throw std::logic_error("TrainingPass::collect_float_gradients: backward() kept no norm gradients");
        }
        sum_float_gradients(dlogits, norm_parts_, threads, out);
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

    // One sequence's working rows in the backward pass, allocated once per thread.
    class BackwardScratch {
    public:
        BackwardScratch(const Config& c, std::size_t length)
            : length_(length),
              residual_(length * c.dim),
              normed_(length * c.dim),
              product_(length * c.dim),
              activation_(length * c.hidden_dim),
              scores_(length) {}
        // dL/d(the residual stream) where the walk back has reached.
        [[nodiscard]] MatrixView<float> dx() { return rows(residual_); }
        // dL/d(an RMSNorm's output): the sum of the dX of the projections that read it.
        [[nodiscard]] MatrixView<float> dnormed() { return rows(normed_); }
        // One projection's dX (dim columns) before it is added in, or wo's dX (dL/d(attended)).
        [[nodiscard]] MatrixView<float> product() { return rows(product_); }
        // dL/d(the SwiGLU activation).
        [[nodiscard]] MatrixView<float> dactivation() { return rows(activation_); }
        [[nodiscard]] std::span<float> dscores() { return scores_; }

    private:
        [[nodiscard]] MatrixView<float> rows(std::vector<float>& v) {
            return {std::span<float>(v), length_, v.size() / length_};
        }
        std::size_t length_;
        std::vector<float> residual_, normed_, product_, activation_, scores_;
    };

    void check_share(SequenceShare share, const char* who) const {
        if (share.first > share.last || share.last > sequences_) {
            throw std::invalid_argument(std::string("TrainingPass::") + who + ": sequences " +
                                        std::to_string(share.first) + ".." + std::to_string(share.last) +
                                        " of a batch of " + std::to_string(sequences_));
        }
    }

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
    [[nodiscard]] MatrixView<const float> sequence_rows(MatrixView<const float> batch, std::size_t s) const {
        return {batch.data().subspan(s * length_ * batch.cols(), length_ * batch.cols()), length_, batch.cols()};
    }
    [[nodiscard]] std::span<float> rotation_row(std::size_t pos) {
        return std::span<float>(rotation_).subspan(pos * config_.head_size(), config_.head_size());
    }
    // Entries of sequence s of a one-per-token vector.
    [[nodiscard]] std::span<float> per_token(std::vector<float>& v, std::size_t s) {
        return std::span<float>(v).subspan(s * length_, length_);
    }
    // Softmax rows of head h of sequence s: length x length, row t filled up to t.
    [[nodiscard]] std::span<float> probability_row(LayerTape& l, std::size_t s, std::size_t h, std::size_t t) {
        return std::span<float>(l.probabilities).subspan(((s * config_.n_heads + h) * length_ + t) * length_, t + 1);
    }
    [[nodiscard]] NormGradientLayout norm_layout() const noexcept { return {config_.n_layers, config_.dim}; }

    // Block `layer`'s rows of sequence s on the tape: what its forward writes and its backward reads.
    [[nodiscard]] BlockRows tape_rows(std::size_t layer, std::size_t s) {
        const Config& c = config_;
        LayerTape& l = layers_[layer];
        return {
            .rotation = {std::span<const float>(rotation_), length_, c.head_size()},
            .input = rows(l.input, c.dim, s),
            .att_normed = rows(l.att_normed, c.dim, s),
            .att_inverse = per_token(l.att_inverse, s),
            .q = rows(l.q, c.dim, s),
            .keys = rows(l.k, c.kv_dim(), s),
            .values = rows(l.v, c.kv_dim(), s),
            .attended = rows(l.attended, c.dim, s),
            .mid = rows(l.mid, c.dim, s),
            .ffn_normed = rows(l.ffn_normed, c.dim, s),
            .ffn_inverse = per_token(l.ffn_inverse, s),
            .gate = rows(l.gate, c.hidden_dim, s),
            .up = rows(l.up, c.hidden_dim, s),
            .activation = rows(l.activation, c.hidden_dim, s),
            .output = layer + 1 < c.n_layers ? rows(layers_[layer + 1].input, c.dim, s) : rows(final_input_, c.dim, s)};
    }

    void forward_sequence(const Transformer<Linear>& model, std::size_t s) {
        const Config& c = config_;
        model.embed(std::span<const int>(tokens_).subspan(s * length_, length_), rows(layers_[0].input, c.dim, s));
        for (std::size_t layer = 0; layer < c.n_layers; ++layer) {
            LayerTape& l = layers_[layer];
            block_forward(model.blocks()[layer], c, tape_rows(layer, s),
                          [&](std::size_t h, std::size_t t) { return probability_row(l, s, h, t); });
        }
        model.classify(rows(final_input_, c.dim, s), rows(final_normed_, c.dim, s), per_token(final_inverse_, s),
                       rows(logits_, c.vocab_size, s));
    }

    // Walks sequence s back from its logits to its embedded tokens: classifier and final RMSNorm,
    // then per block (last first) the hidden-state gradient, the FFN and the attention.
    void backward_sequence(const Transformer<Linear>& model, MatrixView<const float> dlogits,
                           std::span<const MatrixView<const float>> hidden_gradients, std::size_t s,
                           std::span<float> norm_gradients, BackwardScratch& scratch) {
        const Config& c = config_;
        const std::size_t d = c.dim;
        const NormGradientLayout norms = norm_layout();
        const MatrixView<float> dx = scratch.dx();
        std::ranges::fill(dx.data(), 0.0f);
        model.classifier_layer().backward_input(sequence_rows(dlogits, s), scratch.dnormed());
        rms_norm_backward(rows(final_input_, d, s), per_token(final_inverse_, s), model.rms_final(), scratch.dnormed(),
                          dx, norms.slot(norm_gradients, norms.rms_final()));
        for (std::size_t layer = c.n_layers; layer-- > 0;) {
            if (!hidden_gradients.empty() && !hidden_gradients[layer].data().empty()) {
                add_rows(sequence_rows(hidden_gradients[layer], s), dx);
            }
            const BlockRows r = tape_rows(layer, s);
            backward_ffn(model.blocks()[layer], r, layers_[layer], s, scratch,
                         norms.slot(norm_gradients, norms.rms_ffn(layer)));
            backward_attention(model.blocks()[layer], r, layers_[layer], s, scratch,
                               norms.slot(norm_gradients, norms.rms_att(layer)));
        }
        std::ranges::copy(dx.data(), rows(input_gradient_, d, s).data().begin());
    }

    // output = mid + w2(swiglu(w1 n, w3 n)), n = RMSNorm(mid): turns scratch.dx() from dL/d(output)
    // into dL/d(mid), keeping w2's, w1's and w3's output gradients; adds to drms_ffn.
    void backward_ffn(const Block<Linear>& b, const BlockRows& r, LayerTape& l, std::size_t s, BackwardScratch& scratch,
                      std::span<float> drms_ffn) {
        const Config& c = config_;
        const MatrixView<float> dactivation = scratch.dactivation();
        backward_residual_projection(b.w2, l.dw2, s, scratch, dactivation);
        const auto dgate = rows(l.dw1, c.hidden_dim, s);
        const auto dup = rows(l.dw3, c.hidden_dim, s);
        for (std::size_t e = 0; e < dgate.data().size(); ++e) {
            const SwigluGradient g = swiglu_backward(r.gate.data()[e], r.up.data()[e], dactivation.data()[e]);
            dgate.data()[e] = g.gate;
            dup.data()[e] = g.up;
        }
        b.w1.backward_input(dgate, scratch.dnormed());
        add_input_gradient(b.w3, dup, scratch);
        rms_norm_backward(r.mid, r.ffn_inverse, b.rms_ffn, scratch.dnormed(), scratch.dx(), drms_ffn);
    }

    // mid = input + wo(attention(rope(wq n), rope(wk n), wv n)), n = RMSNorm(input): turns
    // scratch.dx() from dL/d(mid) into dL/d(input), keeping wo's, wq's, wk's and wv's output
    // gradients; adds to drms_att.
    void backward_attention(const Block<Linear>& b, const BlockRows& r, LayerTape& l, std::size_t s,
                            BackwardScratch& scratch, std::span<float> drms_att) {
        const Config& c = config_;
        const MatrixView<float> dattended = scratch.product();
        backward_residual_projection(b.wo, l.dwo, s, scratch, dattended);
        const auto dq = rows(l.dq, c.dim, s);
        const auto dk = rows(l.dk, c.kv_dim(), s);
        const auto dv = rows(l.dv, c.kv_dim(), s);
        causal_attention_backward(
            attention_heads(c), r.q, r.keys, r.values,
            [&](std::size_t h, std::size_t t) { return probability_row(l, s, h, t); }, dattended, scratch.dscores(), dq,
            dk, dv);
        for (std::size_t t = 0; t < length_; ++t) {
            rotate(dq.row(t), r.rotation.row(t), true);
            rotate(dk.row(t), r.rotation.row(t), true);
        }
        b.wq.backward_input(dq, scratch.dnormed());
        add_input_gradient(b.wk, dk, scratch);
        add_input_gradient(b.wv, dv, scratch);
        rms_norm_backward(r.input, r.att_inverse, b.rms_att, scratch.dnormed(), scratch.dx(), drms_att);
    }

    // wo and w2 add their output to the residual stream, so their dY is scratch.dx(): kept as the
    // projection's output gradient, and its dX written to dinput.
    void backward_residual_projection(const Linear& projection, std::vector<float>& output_gradient, std::size_t s,
                                      BackwardScratch& scratch, MatrixView<float> dinput) {
        std::ranges::copy(scratch.dx().data(), rows(output_gradient, config_.dim, s).data().begin());
        projection.backward_input(scratch.dx(), dinput);
    }

    // Adds the dX of `layer` for dy to scratch.dnormed(), where another projection of the same
    // input has written its own.
    static void add_input_gradient(const Linear& layer, MatrixView<const float> dy, BackwardScratch& scratch) {
        layer.backward_input(dy, scratch.product());
        add_rows(scratch.product(), scratch.dnormed());
    }

    void sum_float_gradients(MatrixView<const float> dlogits, std::span<const float> norm_parts, std::size_t threads,
                             FloatGradients& out) const {
        const Config& c = config_;
        const std::size_t d = c.dim;
        const NormGradientLayout layout = norm_layout();
        const std::size_t per_sequence = layout.size();
        std::vector<float> norms(per_sequence, 0.0f);
        for (std::size_t s = 0; s < sequences_; ++s) {
            for (std::size_t e = 0; e < per_sequence; ++e) norms[e] += norm_parts[s * per_sequence + e];
        }
        const auto at = [&](std::size_t offset) { return norms.begin() + std::ptrdiff_t(offset); };
        out.rms_att.assign(at(layout.rms_att(0)), at(layout.rms_ffn(0)));
        out.rms_ffn.assign(at(layout.rms_ffn(0)), at(layout.rms_final()));
        out.rms_final.assign(at(layout.rms_final()), norms.end());

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
    std::vector<float> norm_parts_;      // each sequence's part of the norms' gradients, when kept
};

}  // namespace multibool::llama
