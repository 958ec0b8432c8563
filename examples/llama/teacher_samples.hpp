#pragma once
// Training sequences written by the float teacher (data-free distillation, as in LLM-QAT, Liu et
// al. 2023): each starts at BOS and is sampled at temperature 1, one token at a time. A step mixes
// them with windows of the training text, so the student sees the teacher's whole distribution
// instead of a fixed 250K-token text it can overfit. Every draw is keyed by (seed, step, sequence,
// position) through counter-based randomness and each sequence is written by one thread, so the
// tokens depend on neither the thread count nor the order of the threads: a resumed run writes
// the same sequences as the uninterrupted one.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"
#include "multibool/backends/thread_pool.hpp"
#include "multibool/training/counter_random.hpp"

namespace multibool::llama {

// The draw of position `position` of sequence `sequence` at `step`; the coordinate after the
// sequence (1) keeps these draws apart from the window draws of training_windows.hpp (0 there).
[[nodiscard]] inline double teacher_sample_draw(std::uint64_t seed, std::size_t step, std::size_t sequence,
                                                std::size_t position) noexcept {
    return counter_uniform(seed, step, sequence, 1, 0, position);
}

// The token whose cumulative softmax(logits) probability first exceeds u in [0, 1) (inverse-CDF
// sampling at temperature 1; sums in double, in vocabulary order). `weights` is scratch for the
// unnormalized probabilities, so each exp is taken once and a caller's loop allocates nothing.
[[nodiscard]] inline int sample_softmax(std::span<const float> logits, double u, std::vector<double>& weights) {
    const float largest = *std::ranges::max_element(logits);
    if (!std::isfinite(largest)) throw std::runtime_error("teacher sampling: the teacher produced non-finite logits");
    weights.resize(logits.size());
    double sum = 0.0;
    for (std::size_t i = 0; i < logits.size(); ++i) sum += weights[i] = std::exp(double(logits[i]) - double(largest));
    double remaining = u * sum;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        remaining -= weights[i];
        if (remaining < 0.0) return int(i);
    }
    // Reached only when rounding leaves a sliver of u * sum: the most likely token.
    return int(std::ranges::max_element(logits) - logits.begin());
}
[[nodiscard]] inline int sample_softmax(std::span<const float> logits, double u) {
    std::vector<double> weights;
    return sample_softmax(logits, u, weights);
}

// Overwrites sequences first .. first + count - 1 of a batch of `length`-token rows with sequences
// the teacher writes: the model reads [BOS, s0 .. s(n-2)] and predicts s0 .. s(n-1), the layout of
// draw_training_windows.
template <LinearLayer Linear>
void write_teacher_sequences(const Transformer<Linear>& teacher, std::uint64_t seed, std::size_t step,
                             std::size_t first, std::size_t count, std::size_t length, std::span<int> inputs,
                             std::span<int> targets, std::size_t threads) {
    if ((first + count) * length > std::min(inputs.size(), targets.size())) {
        throw std::invalid_argument("write_teacher_sequences: sequences " + std::to_string(first) + ".." +
                                    std::to_string(first + count) + " of " + std::to_string(length) +
                                    " tokens do not fit the batch");
    }
    parallel_for(threads, count, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t s = begin; s < end; ++s) {
            const std::size_t sequence = first + s;
            const std::span<int> in = inputs.subspan(sequence * length, length);
            const std::span<int> out = targets.subspan(sequence * length, length);
            Session session(teacher.config(), length);
            std::vector<double> weights;
            int token = Tokenizer::bos;
            for (std::size_t t = 0; t < length; ++t) {
                in[t] = token;
                const SessionLogits logits = teacher.forward(std::span<const int>(&in[t], 1), t, session);
                token = sample_softmax(logits.row(0), teacher_sample_draw(seed, step, sequence, t), weights);
                out[t] = token;
            }
        }
    });
}

}  // namespace multibool::llama
