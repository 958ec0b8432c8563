// multibool-llama perplexity: a text scored under the protocol of the shared assets, or llama.cpp's.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <unistd.h>

#include "llama/cli/command_lines.hpp"
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
    const ProtocolChoice protocol_choice = protocol_option(options);
    const ModelChoice choice = choose_model(options);
    const std::filesystem::path text_path = options.path("text");
    const std::string text = read_text_file(text_path);
    const LoadedModel loaded = load_chosen_model(choice, options);
    std::visit(
        [&](const auto& model) {
            const TextTokenizer tokenizer = load_matching_tokenizer(options, model.config());
            // llama-perplexity tokenizes with BOS and writes it over each window's first token only
            // when the vocabulary adds BOS; the assets protocol always starts a chunk with it.
            const bool adds_bos = protocol_choice.llama_cpp ? tokenizer.adds_bos() : true;
            const std::optional<int> bos = adds_bos ? std::optional<int>(tokenizer.required_bos()) : std::nullopt;
            const PerplexityProtocol protocol =
                protocol_choice.llama_cpp
                    ? PerplexityProtocol::llama_cpp(protocol_choice.context.value_or(model.config().seq_len), bos)
                    : PerplexityProtocol::assets(*bos);
            if (protocol.context > model.config().seq_len) {
                std::cerr << "note: windows of " << protocol.context << " tokens exceed the model's context of "
                          << model.config().seq_len << "\n";
            }
            const std::vector<int> stream = tokenizer.encode(text, protocol_choice.llama_cpp && adds_bos, false);
            std::cerr << text_path.string() << ": " << stream.size() << " tokens (" << tokenizer.kind()
                      << " tokenizer), " << threads << " thread(s)\n";
            const auto started = std::chrono::steady_clock::now();
            const bool terminal = isatty(fileno(stderr)) != 0;
            const PerplexityResult result = perplexity(
                model, stream, threads,
                [&](std::size_t done, std::size_t all) {
                    if (terminal) {
                        std::cerr << "\rwindow " << done << "/" << all << (done == all ? "\n" : "") << std::flush;
                    } else if (done * logged_progress_lines / all != (done - 1) * logged_progress_lines / all) {
                        std::cerr << "window " << done << "/" << all << "\n";
                    }
                },
                protocol);
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            std::cerr << double(result.tokens) / seconds << " tokens/s scored\n";
            std::printf("perplexity: %.4f tokens: %zu\n", result.perplexity(), result.tokens);
        },
        loaded.model);
    return exit_success;
}

}  // namespace

Command perplexity_command() { return with_run(perplexity_command_line(), run_perplexity); }

}  // namespace multibool::llama::cli
