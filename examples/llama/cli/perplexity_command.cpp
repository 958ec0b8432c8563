// multibool-llama perplexity: a text scored under the protocol of the shared assets, or llama.cpp's.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
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

constexpr std::size_t max_llama_cpp_context = std::size_t{1} << 20;

// A terminal gets one updating line; a log gets a line per tenth of the chunks.
constexpr std::size_t logged_progress_lines = 10;

// --protocol and --ctx, checked before the model is read; the context defaults to the model's.
struct ProtocolChoice {
    bool llama_cpp = false;
    std::optional<std::size_t> context;
};

ProtocolChoice protocol_option(const ParsedOptions& options) {
    const std::string name = *options.text("protocol");
    if (name != "assets" && name != "llama.cpp") {
        throw UsageError("--protocol takes assets or llama.cpp, found '" + name + "'");
    }
    ProtocolChoice choice{name == "llama.cpp", options.count("ctx")};
    if (choice.context && !choice.llama_cpp) throw UsageError("--ctx applies to --protocol llama.cpp");
    if (choice.context && (*choice.context < min_llama_cpp_context || *choice.context > max_llama_cpp_context)) {
        throw UsageError("--ctx takes " + std::to_string(min_llama_cpp_context) + ".." +
                         std::to_string(max_llama_cpp_context) + ", found " + std::to_string(*choice.context));
    }
    return choice;
}

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

Command perplexity_command() {
    std::vector<OptionSpec> options = model_options(true);
    options.push_back({"text", "F", "text file to score (default: {})", asset("tinystories-valid.txt").string()});
    options.push_back({"threads", "N", "worker threads over windows (default: all hardware threads, at most 256)"});
    options.push_back({"protocol", "P", "{} (default) or llama.cpp (llama-perplexity's windows)", "assets"});
    options.push_back({"ctx", "N",
                       "with --protocol llama.cpp: tokens per window, llama.cpp's -c (default: the model's "
                       "context length)"});
    return {"perplexity", "perplexity of a text under the protocol of the shared assets or llama.cpp's",
            "Scores a text. The default protocol is the shared assets README's (chunks of 256 tokens, BOS\n"
            "first, an empty cache per chunk, every token scored). --protocol llama.cpp reproduces\n"
            "llama-perplexity -c N: the text tokenized with BOS, floor(tokens / N) windows, each with its first\n"
            "token set to BOS and its second half scored. Progress goes to stderr; stdout ends with one line\n"
            "'perplexity: <value> tokens: <scored tokens>'.",
            std::move(options), run_perplexity};
}

}  // namespace multibool::llama::cli
