#pragma once
// Text generation with llama2.c's `run` loop: the prompt is encoded with BOS, positions run up
// to `steps` (prompt included; past the model's seq_len if asked, as llama.cpp allows), and
// generation stops early at BOS (or a GGUF vocabulary's EOS: TextTokenizer::ends_generation).
// Greedy decoding reproduces llama2.c exactly; sampling is plain temperature sampling (llama2.c
// adds top-p 0.9 and its own generator). The prompt goes through one batched forward; then one
// token per step from the KV cache.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "llama/text_tokenizer.hpp"
#include "llama/transformer.hpp"

namespace multibool::llama {

// Greedy (argmax, first maximum on ties) at temperature 0; otherwise a draw from
// softmax(logits / temperature) with a seeded generator, so a seed reproduces a run.
class Sampler {
public:
    explicit Sampler(float temperature = 0.0f, std::uint64_t seed = 0) : temperature_(temperature), rng_(seed) {
        if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
            throw std::invalid_argument("Sampler: temperature must be a finite number >= 0, found " +
                                        std::to_string(temperature));
        }
    }

    int sample(std::span<const float> logits) {
        const auto best = std::ranges::max_element(logits);
        if (!std::isfinite(*best)) throw std::runtime_error("Sampler: the model produced non-finite logits");
        if (temperature_ == 0.0f) return int(best - logits.begin());
        probabilities_.resize(logits.size());
        double sum = 0.0;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            probabilities_[i] = std::exp((double(logits[i]) - double(*best)) / temperature_);
            sum += probabilities_[i];
        }
        if (!std::isfinite(sum)) throw std::runtime_error("Sampler: the model produced non-finite logits");
        double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
        for (std::size_t i = 0; i < logits.size(); ++i) {
            r -= probabilities_[i];
            if (r < 0.0) return int(i);
        }
        return int(best - logits.begin());  // only reached through rounding at the very end
    }

private:
    float temperature_;
    std::mt19937_64 rng_;
    std::vector<double> probabilities_;
};

struct GenerationResult {
    std::vector<int> tokens;  // BOS, the prompt, then the generated tokens
    std::size_t prompt_tokens = 0;
    double prefill_seconds = 0.0;  // the prompt's batched forward
    double decode_seconds = 0.0;   // everything after it: sampling and one-token forwards
    [[nodiscard]] std::size_t generated() const noexcept { return tokens.size() - prompt_tokens; }
    // Decoding speed, prefill excluded (as llama2.c starts its clock after the first forward).
    [[nodiscard]] double tokens_per_second() const noexcept {
        return decode_seconds > 0.0 ? double(generated()) / decode_seconds : 0.0;
    }
};

// llama2.c's safe_printf rule: a piece that is a single non-printable, non-space byte is dropped
// from the printed text (raw control bytes from byte-fallback pieces).
inline bool printable_piece(std::string_view piece) noexcept {
    if (piece.size() != 1) return true;
    const auto byte = static_cast<unsigned char>(piece[0]);
    return (byte >= 0x20 && byte < 0x7f) || (byte >= '\t' && byte <= '\r');
}

// on_text(piece) receives the printable text as it is produced: the prompt first (its leading
// dummy-prefix space dropped, as after BOS), then each generated piece.
template <LinearLayer Linear>
GenerationResult generate(const Transformer<Linear>& model, const TextTokenizer& tokenizer, std::string_view prompt,
                          std::size_t steps, Sampler& sampler,
                          const std::function<void(std::string_view)>& on_text = {}) {
    GenerationResult result;
    result.tokens = tokenizer.encode(prompt, tokenizer.adds_bos(), false);
    if (result.tokens.empty()) throw std::invalid_argument("generate: the prompt encodes to no tokens");
    result.prompt_tokens = result.tokens.size();
    // As in llama2.c, `steps` counts forward passes; the token sampled after the last one is kept.
    const std::size_t positions = steps;
    if (result.prompt_tokens > positions) {
        throw std::invalid_argument("generate: the prompt is " + std::to_string(result.prompt_tokens) +
                                    " tokens (BOS included), more than the " + std::to_string(positions) +
                                    " positions allowed by steps");
    }
    const auto emit = [&](int previous, int token) {
        const std::string_view piece = tokenizer.decode(previous, token);
        if (on_text && printable_piece(piece)) on_text(piece);
    };
    for (std::size_t i = 1; i < result.tokens.size(); ++i) emit(result.tokens[i - 1], result.tokens[i]);

    using clock = std::chrono::steady_clock;
    const auto started = clock::now();
    Session session(model.config(), positions);
    SessionLogits logits = model.forward(result.tokens, 0, session, Logits::last);
    const auto prefilled = clock::now();
    while (true) {
        const int next = sampler.sample(logits.row(0));
        if (tokenizer.ends_generation(next)) break;
        emit(result.tokens.back(), next);
        result.tokens.push_back(next);
        const std::size_t pos = result.tokens.size() - 1;
        if (pos == positions) break;
        logits = model.forward(std::span<const int>(&result.tokens.back(), 1), pos, session, Logits::last);
    }
    result.prefill_seconds = std::chrono::duration<double>(prefilled - started).count();
    result.decode_seconds = std::chrono::duration<double>(clock::now() - prefilled).count();
    return result;
}

}  // namespace multibool::llama
