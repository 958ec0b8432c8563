#pragma once
// Calibration statistics for activation-aware conversion: the float model runs over a text
// and every projection's inputs feed a second moment H = E[x x^T]. Projections that read the
// same vector (wq, wk, wv: the attention norm; w1, w3: the FFN norm) share one H.
#include <cstddef>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/perplexity.hpp"
#include "llama/transformer.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "multibool/solvers/second_moment.hpp"

namespace multibool::llama {

// The four distinct projection inputs of a block.
enum class ProjectionInput { attention_norm, attention_output, ffn_norm, ffn_hidden };

inline ProjectionInput input_of(Projection p) noexcept {
    switch (p) {
        case Projection::wq:
        case Projection::wk:
        case Projection::wv:
            return ProjectionInput::attention_norm;
        case Projection::wo:
            return ProjectionInput::attention_output;
        case Projection::w1:
        case Projection::w3:
            return ProjectionInput::ffn_norm;
        case Projection::w2:
            return ProjectionInput::ffn_hidden;
    }
    return ProjectionInput::attention_norm;
}

class CalibrationStatistics {
public:
    explicit CalibrationStatistics(const Config& c) {
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            moments_.emplace_back(c.dim);         // attention_norm
            moments_.emplace_back(c.dim);         // attention_output
            moments_.emplace_back(c.dim);         // ffn_norm
            moments_.emplace_back(c.hidden_dim);  // ffn_hidden
        }
    }
    [[nodiscard]] const SecondMoment& of(std::size_t layer, Projection p) const { return moments_.at(index(layer, p)); }
    [[nodiscard]] SecondMoment& of(std::size_t layer, Projection p) { return moments_.at(index(layer, p)); }
    [[nodiscard]] std::size_t tokens() const noexcept { return tokens_; }
    void count_tokens(std::size_t n) noexcept { tokens_ += n; }

private:
    static std::size_t index(std::size_t layer, Projection p) noexcept {
        return layer * 4 + static_cast<std::size_t>(input_of(p));
    }
    std::vector<SecondMoment> moments_;
    std::size_t tokens_ = 0;
};

// A float layer that also records what it reads. Only the first projection of a shared input
// records, so each input vector is counted once.
struct RecordingLinear {
    DenseLinear dense;
    SecondMoment* inputs = nullptr;  // null: this projection's input is recorded by another

    [[nodiscard]] std::size_t in_features() const noexcept { return dense.in_features(); }
    [[nodiscard]] std::size_t out_features() const noexcept { return dense.out_features(); }
    void forward(std::span<const float> x, std::span<float> y) const {
        if (inputs != nullptr) inputs->accumulate(x);
        dense.forward(x, y);
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        if (inputs != nullptr) inputs->accumulate(xs);
        dense.forward(xs, ys);
    }
    void backward_input(std::span<const float> dy, std::span<float> dx) const { dense.backward_input(dy, dx); }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const { dense.backward_input(dys, dxs); }
};

// Runs the float model over up to max_tokens tokens of stream, in the perplexity protocol's
// chunks (BOS first, an empty cache per chunk), and returns every projection input's H.
inline CalibrationStatistics calibrate(const Checkpoint& checkpoint, std::span<const int> stream,
                                       std::size_t max_tokens, int bos = Tokenizer::bos,
                                       const std::function<void(std::size_t, std::size_t)>& progress = {}) {
    if (stream.empty() || max_tokens == 0) throw std::invalid_argument("calibrate: no calibration tokens");
    CalibrationStatistics statistics(checkpoint.config());
    const auto model = Transformer<RecordingLinear>::from_checkpoint(checkpoint, [&](MatrixView<const float> w,
                                                                                     std::size_t layer, Projection p) {
        const bool records = p == Projection::wq || p == Projection::wo || p == Projection::w1 || p == Projection::w2;
        return RecordingLinear{DenseLinear(w), records ? &statistics.of(layer, p) : nullptr};
    });
    const auto tokens = stream.first(std::min(stream.size(), max_tokens));
    const std::size_t chunks = (tokens.size() + perplexity_chunk_tokens - 1) / perplexity_chunk_tokens;
    Session session(model.config(), perplexity_chunk_tokens);
    std::vector<int> input;
    for (std::size_t c = 0; c < chunks; ++c) {
        const auto chunk =
            tokens.subspan(c * perplexity_chunk_tokens,
                           std::min(perplexity_chunk_tokens, tokens.size() - c * perplexity_chunk_tokens));
        input.assign(1, bos);
        input.insert(input.end(), chunk.begin(), chunk.end() - 1);
        model.forward(input, 0, session, Logits::last);
        statistics.count_tokens(input.size());
        if (progress) progress(c + 1, chunks);
    }
    return statistics;
}

}  // namespace multibool::llama
