#pragma once
// Perplexity under two protocols. The default is the one of the model assets' README, so figures
// compare across tools: the token stream (no BOS) is cut into non-overlapping chunks of 256; each
// chunk c0..c(n-1) is fed as [BOS, c0 .. c(n-2)] at positions 0..n-1 with an empty cache and
// scores c0..c(n-1), so every stream token is scored exactly once. The other is llama.cpp's
// llama-perplexity -c N: the stream (tokenized with BOS) is cut into floor(tokens / N) windows of
// N, the rest dropped; each window is fed from an empty cache with its first token replaced by
// BOS, and only its second half is scored: positions N/2 .. N-2 predict tokens N/2+1 .. N-1.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"

namespace multibool::llama {

inline constexpr std::size_t perplexity_chunk_tokens = 256;
// The smallest llama.cpp window with a scored token: positions N/2 .. N-2 must not be empty.
inline constexpr std::size_t min_llama_cpp_context = 3;

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

// -log p(targets[i] | input[0 .. first + i]) summed over i: input fed with a fresh cache
// (positions restart at 0), the logits at position first + i scored against targets[i].
template <LinearLayer Linear>
double window_negative_log_likelihood(const Transformer<Linear>& model, std::span<const int> input, std::size_t first,
                                      std::span<const int> targets, Session& session) {
    const SessionLogits logits = model.forward(input, 0, session, Logits::all);
    double nll = 0.0;
    for (std::size_t i = 0; i < targets.size(); ++i) {
        nll += negative_log_likelihood(logits.row(first + i), std::size_t(targets[i]));
    }
    // Finite weights can still overflow in the products; a NaN perplexity must not pass as a result.
    if (!std::isfinite(nll)) throw std::runtime_error("perplexity: the model produced non-finite logits");
    return nll;
}

// One chunk of the assets protocol: [BOS, chunk without its last token] scores the whole chunk.
template <LinearLayer Linear>
double chunk_negative_log_likelihood(const Transformer<Linear>& model, std::span<const int> chunk, Session& session,
                                     int bos = Tokenizer::bos) {
    std::vector<int> input(chunk.size());
    input[0] = bos;
    std::copy(chunk.begin(), chunk.end() - 1, input.begin() + 1);
    return window_negative_log_likelihood(model, input, 0, chunk, session);
}

struct PerplexityProtocol {
    enum class Kind { assets, llama_cpp };
    Kind kind = Kind::assets;
    std::size_t context = perplexity_chunk_tokens;  // tokens per window (llama.cpp's -c)
    // The first input token of a window; llama.cpp's protocol leaves windows as they are for a
    // vocabulary that adds no BOS (nullopt).
    std::optional<int> bos = Tokenizer::bos;

    [[nodiscard]] static PerplexityProtocol assets(int bos) { return {Kind::assets, perplexity_chunk_tokens, bos}; }
    [[nodiscard]] static PerplexityProtocol llama_cpp(std::size_t context, std::optional<int> bos) {
        return {Kind::llama_cpp, context, bos};
    }
    // Windows a stream of `tokens` is cut into.
    [[nodiscard]] std::size_t windows(std::size_t tokens) const noexcept {
        return kind == Kind::assets ? (tokens + context - 1) / context : tokens / context;
    }
    // The first position scored in a window.
    [[nodiscard]] std::size_t first_scored() const noexcept { return kind == Kind::assets ? 0 : context / 2; }
};

// progress(windows done, windows in all) is called after each window, from one thread at a time.
// Windows are shared among `threads` workers; their sums are added in window order, so the
// result does not depend on the thread count. For llama.cpp's protocol the stream must hold the
// text tokenized as llama-perplexity tokenizes it (with BOS when the vocabulary adds one), at
// least two windows of it, as llama-perplexity requires.
template <LinearLayer Linear>
PerplexityResult perplexity(const Transformer<Linear>& model, std::span<const int> stream, std::size_t threads = 1,
                            const std::function<void(std::size_t, std::size_t)>& progress = {},
                            const PerplexityProtocol& protocol = {}) {
    using Kind = PerplexityProtocol::Kind;
    if (stream.empty()) throw std::invalid_argument("perplexity: the text encodes to no tokens");
    const std::size_t n = protocol.context;
    if (protocol.kind == Kind::llama_cpp && (n < min_llama_cpp_context || stream.size() < 2 * n)) {
        throw std::invalid_argument("perplexity: llama.cpp's protocol needs a context of at least " +
                                    std::to_string(min_llama_cpp_context) +
                                    " tokens and a text of at least two windows; the context is " + std::to_string(n) +
                                    " tokens and the text " + std::to_string(stream.size()));
    }
    if (protocol.kind == Kind::assets && !protocol.bos) {
        throw std::invalid_argument("perplexity: the assets protocol starts every chunk with BOS");
    }
    // Targets are never fed to the model, so forward() does not see them: check them here.
    check_vocabulary(stream, model.config().vocab_size, "perplexity");
    const std::size_t windows = protocol.windows(stream.size());
    const std::size_t first = protocol.first_scored();
    std::vector<double> window_nll(windows, 0.0);
    std::atomic<std::size_t> next_window{0};
    std::size_t done = 0;
    std::mutex progress_mutex;
    std::exception_ptr failure;

    const auto work = [&] {
        try {
            Session session(model.config(), n);
            std::vector<int> input;
            for (std::size_t w = next_window++; w < windows; w = next_window++) {
                const std::size_t begin = w * n;
                const auto window = stream.subspan(begin, std::min(n, stream.size() - begin));
                if (protocol.kind == Kind::assets) {
                    window_nll[w] = chunk_negative_log_likelihood(model, window, session, *protocol.bos);
                } else {
                    input.assign(window.begin(), window.end());
                    if (protocol.bos) input[0] = *protocol.bos;
                    window_nll[w] =
                        window_negative_log_likelihood(model, input, first, window.subspan(first + 1), session);
                }
                const std::lock_guard lock(progress_mutex);
                ++done;
                if (progress) progress(done, windows);
            }
        } catch (...) {
            const std::lock_guard lock(progress_mutex);
            if (!failure) failure = std::current_exception();
            next_window = windows;
        }
    };
    std::vector<std::jthread> workers;
    for (std::size_t t = 1; t < std::clamp<std::size_t>(threads, 1, windows); ++t) workers.emplace_back(work);
    work();
    workers.clear();
    if (failure) std::rethrow_exception(failure);

    PerplexityResult result;
    for (double nll : window_nll) result.negative_log_likelihood += nll;
    result.tokens = protocol.kind == Kind::assets ? stream.size() : windows * (n - 1 - first);
    return result;
}

}  // namespace multibool::llama
