#pragma once
// The batches a fine-tuning step trains on: windows of the training text drawn by counter-based
// randomness from (seed, step), so a batch depends on nothing else and a resumed run draws the
// same windows as the uninterrupted one.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "llama/tokenizer.hpp"
#include "multibool/training/counter_random.hpp"

namespace multibool::llama {

// batch windows of `length` text tokens: the model reads [BOS, c0 .. c(n-2)] at positions 0 .. n-1
// and predicts c0 .. c(n-1), as in the perplexity protocol. inputs and targets hold batch x length.
inline void draw_training_windows(std::span<const int> text, std::uint64_t seed, std::size_t step, std::size_t batch,
                                  std::size_t length, std::span<int> inputs, std::span<int> targets) {
    const std::size_t starts = text.size() - length + 1;
    for (std::size_t b = 0; b < batch; ++b) {
        const double u = counter_uniform(seed, step, b, 0, 0, 0);
        const std::size_t start = std::min(starts - 1, static_cast<std::size_t>(u * double(starts)));
        inputs[b * length] = Tokenizer::bos;
        for (std::size_t t = 0; t < length; ++t) {
            targets[b * length + t] = text[start + t];
            if (t + 1 < length) inputs[b * length + t + 1] = text[start + t];
        }
    }
}

}  // namespace multibool::llama
