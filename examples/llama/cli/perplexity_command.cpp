// multibool-llama perplexity: a text scored under the protocol of the shared assets.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <variant>
#include <vector>

#include <unistd.h>

#include "llama/cli/commands.hpp"
#include "llama/cli/model_choice.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/perplexity.hpp"

namespace multibool::llama::cli {

namespace {

// A terminal gets one updating line; a log gets a line per tenth of the chunks.
constexpr std::size_t logged_progress_lines = 10;

int run_perplexity(const ParsedOptions& options) {
    const std::size_t threads = thread_count(options);
    const ModelChoice choice = choose_model(options);
    const std::filesystem::path text_path = options.path("text");
    const std::string text = read_text_file(text_path);
    const LoadedModel loaded = load_chosen_model(choice, options);
    std::visit(
        [&](const auto& model) {
            const Tokenizer tokenizer = load_matching_tokenizer(options.path("tokenizer"), model.config());
            const std::vector<int> stream = tokenizer.encode(text, false, false);
            std::cerr << text_path.string() << ": " << stream.size() << " tokens, " << threads << " thread(s)\n";
            const auto started = std::chrono::steady_clock::now();
            const bool terminal = isatty(fileno(stderr)) != 0;
            const PerplexityResult result = perplexity(model, stream, threads, [&](std::size_t done, std::size_t all) {
                if (terminal) {
                    std::cerr << "\rchunk " << done << "/" << all << (done == all ? "\n" : "") << std::flush;
                } else if (done * logged_progress_lines / all != (done - 1) * logged_progress_lines / all) {
                    std::cerr << "chunk " << done << "/" << all << "\n";
                }
            });
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            std::cerr << double(result.tokens) / seconds << " tokens/s scored\n";
            std::printf("perplexity: %.4f tokens: %zu\n", result.perplexity(), result.tokens);
        },
        loaded.model);
    return exit_success;
}

}  // namespace

Command perplexity_command() {
    std::vector<OptionSpec> options = model_options(true);
    options.push_back({"text", "F", "text file to score (default: {})", asset("tinystories-valid.txt").string()});
    options.push_back({"threads", "N", "worker threads over chunks (default: all hardware threads)"});
    return {"perplexity", "perplexity of a text under the protocol of the shared assets",
            "Scores a text with the protocol of the shared assets README (chunks of 256 tokens, BOS first, an\n"
            "empty cache per chunk). Progress goes to stderr; stdout ends with one line\n"
            "'perplexity: <value> tokens: <count>'.",
            std::move(options), run_perplexity};
}

}  // namespace multibool::llama::cli
