#pragma once
// End-to-end sensitivity of each projection, for bit allocation: the mean per-token
// KL(teacher || model) over calibration chunks when only that projection's weights are replaced by
// an approximation and every other layer stays float (the per-layer "loss perturbation" of
// mixed-precision search, e.g. HAWQ, Dong et al. 2019, measured directly instead of through the
// Hessian). Summed over layers it approximates the KL of the whole converted model, which is what
// perplexity sees; the squared output error it replaces weighs every layer alike.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"
#include "multibool/nn/dense_linear.hpp"

namespace multibool::llama {

// log softmax of one row, in double.
inline void log_softmax(std::span<const float> logits, std::span<double> out) {
    const double largest = *std::ranges::max_element(logits);
    double sum = 0.0;
    for (float l : logits) sum += std::exp(double(l) - largest);
    const double log_sum = largest + std::log(sum);
    for (std::size_t i = 0; i < logits.size(); ++i) out[i] = double(logits[i]) - log_sum;
}

class KlSensitivity {
public:
    static constexpr std::size_t default_chunk = 256;  // the perplexity protocol's

    // Chunks of `chunk` tokens of `tokens` (up to max_tokens), each fed as [bos, c0 .. c(n-2)] with
    // an empty cache, as the perplexity protocol does; the teacher's log-probabilities are kept.
    KlSensitivity(const Checkpoint& teacher, std::span<const int> tokens, std::size_t max_tokens,
                  std::size_t chunk = default_chunk, int bos = Tokenizer::bos)
        : model_(Transformer<DenseLinear>::from_checkpoint(
              teacher, [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); })),
          vocab_(teacher.config().vocab_size) {
        const auto used = tokens.first(std::min(tokens.size(), max_tokens));
        if (used.size() < 2 || chunk < 2) throw std::invalid_argument("KlSensitivity: fewer than 2 tokens to score");
        for (std::size_t begin = 0; begin + 1 < used.size(); begin += chunk) {
            const auto piece = used.subspan(begin, std::min(chunk, used.size() - begin));
            std::vector<int> input{bos};
            input.insert(input.end(), piece.begin(), piece.end() - 1);
            inputs_.push_back(std::move(input));
        }
        for (const auto& input : inputs_) {
            const auto logits = forward(input);
            teacher_log_probabilities_.insert(teacher_log_probabilities_.end(), logits.begin(), logits.end());
            positions_ += input.size();
        }
    }

    // Mean KL(teacher || model) per position with projection p of `layer` replaced by `approx`
    // (rows x cols, row-major, the projection's shape); the model is left as it was.
    // Not thread-safe: the projection is swapped in and back out.
    [[nodiscard]] double of(std::size_t layer, Projection p, std::vector<float> approx) const {
        DenseLinear& slot = model_.blocks()[layer].projection(p);
        const std::size_t rows = std::as_const(slot).weights().rows(), cols = std::as_const(slot).weights().cols();
        if (approx.size() != rows * cols) {
            throw std::invalid_argument("KlSensitivity: layer " + std::to_string(layer) + " " + projection_name(p) +
                                        " is " + std::to_string(rows) + "x" + std::to_string(cols) + ", got " +
                                        std::to_string(approx.size()) + " values");
        }
        DenseLinear replaced(std::move(approx), rows, cols);
        std::swap(slot, replaced);
        double kl = 0.0;
        std::size_t at = 0;
        for (const auto& input : inputs_) {
            const auto log_q = forward(input);
            for (std::size_t i = 0; i < log_q.size(); ++i, ++at) {
                const double log_p = teacher_log_probabilities_[at];
                kl += std::exp(log_p) * (log_p - log_q[i]);
            }
        }
        std::swap(slot, replaced);
        return kl / double(positions_);
    }

    [[nodiscard]] std::size_t positions() const noexcept { return positions_; }

private:
    // Every position's log-probabilities, row after row.
    std::vector<double> forward(const std::vector<int>& input) const {
        Session session(model_.config(), input.size());
        const SessionLogits logits = model_.forward(input, 0, session);
        std::vector<double> out(input.size() * vocab_);
        for (std::size_t t = 0; t < input.size(); ++t) {
            log_softmax(logits.row(t), std::span<double>(out).subspan(t * vocab_, vocab_));
        }
        return out;
    }

    mutable Transformer<DenseLinear> model_;  // of() swaps one projection in and restores it
    std::size_t vocab_;
    std::vector<std::vector<int>> inputs_;
    std::vector<double> teacher_log_probabilities_;  // positions x vocabulary
    std::size_t positions_ = 0;
};

}  // namespace multibool::llama
