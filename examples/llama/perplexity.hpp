#pragma once
// The perplexity protocol of the model assets' README, so figures compare across tools: the
// token stream is cut into non-overlapping chunks of 256; each chunk c0..c(n-1) is fed as
// [BOS, c0 .. c(n-2)] at positions 0..n-1 with an empty cache and scores c0..c(n-1), so every
// stream token is scored exactly once.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <functional>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"

namespace multibool::llama {

inline constexpr std::size_t perplexity_chunk_tokens = 256;

struct PerplexityResult {
    double negative_log_likelihood = 0.0;  // summed over the scored tokens
    std::size_t tokens = 0;
    [[nodiscard]] double perplexity() const noexcept { return std::exp(negative_log_likelihood / double(tokens)); }
};

// -log softmax(logits)[target], in double so that long vocabularies do not lose digits.
inline double negative_log_likelihood(std::span<const float> logits, std::size_t target) {
    const double max = *std::ranges::max_element(logits);
    double sum = 0.0;
    for (float l : logits) sum += std::exp(double(l) - max);
    return std::log(sum) + max - double(logits[target]);
}

// Scores one chunk with a fresh cache (positions restart at 0).
template <LinearLayer Linear>
double chunk_negative_log_likelihood(const Transformer<Linear>& model, std::span<const int> chunk, Session& session) {
    std::vector<int> input(chunk.size());
    input[0] = Tokenizer::bos;
    std::copy(chunk.begin(), chunk.end() - 1, input.begin() + 1);
    const SessionLogits logits = model.forward(input, 0, session, Logits::all);
    double nll = 0.0;
    for (std::size_t t = 0; t < chunk.size(); ++t) nll += negative_log_likelihood(logits.row(t), std::size_t(chunk[t]));
    // Finite weights can still overflow in the products; a NaN perplexity must not pass as a result.
    if (!std::isfinite(nll)) throw std::runtime_error("perplexity: the model produced non-finite logits");
    return nll;
}

// progress(chunks done, chunks in all) is called after each chunk, from one thread at a time.
// Chunks are shared among `threads` workers; their sums are added in chunk order, so the result
// does not depend on the thread count.
template <LinearLayer Linear>
PerplexityResult perplexity(const Transformer<Linear>& model, std::span<const int> stream, std::size_t threads = 1,
                            const std::function<void(std::size_t, std::size_t)>& progress = {}) {
    if (stream.empty()) throw std::invalid_argument("perplexity: the text encodes to no tokens");
    if (model.config().seq_len < perplexity_chunk_tokens) {
        throw std::invalid_argument("perplexity: the protocol feeds chunks of " +
                                    std::to_string(perplexity_chunk_tokens) + " tokens, the model's seq_len is " +
                                    std::to_string(model.config().seq_len));
    }
    // Targets are never fed to the model, so forward() does not see them: check them here.
    check_vocabulary(stream, model.config().vocab_size, "perplexity");
    const std::size_t chunks = (stream.size() + perplexity_chunk_tokens - 1) / perplexity_chunk_tokens;
    std::vector<double> chunk_nll(chunks, 0.0);
    std::atomic<std::size_t> next_chunk{0};
    std::size_t done = 0;
    std::mutex progress_mutex;
    std::exception_ptr failure;

    const auto work = [&] {
        try {
            Session session(model.config(), perplexity_chunk_tokens);
            for (std::size_t c = next_chunk++; c < chunks; c = next_chunk++) {
                const std::size_t begin = c * perplexity_chunk_tokens;
                const auto chunk = stream.subspan(begin, std::min(perplexity_chunk_tokens, stream.size() - begin));
                chunk_nll[c] = chunk_negative_log_likelihood(model, chunk, session);
                const std::lock_guard lock(progress_mutex);
                ++done;
                if (progress) progress(done, chunks);
            }
        } catch (...) {
            const std::lock_guard lock(progress_mutex);
            if (!failure) failure = std::current_exception();
            next_chunk = chunks;
        }
    };
    std::vector<std::jthread> workers;
    for (std::size_t t = 1; t < std::clamp<std::size_t>(threads, 1, chunks); ++t) workers.emplace_back(work);
    work();
    workers.clear();
    if (failure) std::rethrow_exception(failure);

    PerplexityResult result;
    for (double nll : chunk_nll) result.negative_log_likelihood += nll;
    result.tokens = stream.size();
    return result;
}

}  // namespace multibool::llama
