// multibool-llama tokenize: the ids of a text, one per line, as llama.cpp's test-tokenizer-0 writes them.
#include <cstdio>
#include <filesystem>
#include <string>

#include "llama/cli/command_lines.hpp"
#include "llama/cli/commands.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/text_tokenizer.hpp"
#include "multibool/core/gguf_file.hpp"

namespace multibool::llama::cli {

namespace {

int run_tokenize(const ParsedOptions& options) {
    if (options.given("model") && !options.given("tokenizer") && !gguf::is_gguf_file(*options.text("model"))) {
        throw UsageError(*options.text("model") +
                         " is not a GGUF file, which would hold its vocabulary: give --tokenizer");
    }
    const std::string text = options.given("text") ? *options.text("text") : read_text_file(options.path("text-file"));
    const TextTokenizer tokenizer = load_text_tokenizer(tokenizer_path(options));
    for (const int id : tokenizer.encode(text, options.flag("bos"), false)) std::printf("%d\n", id);
    return exit_success;
}

}  // namespace

Command tokenize_command() { return with_run(tokenize_command_line(), run_tokenize); }

}  // namespace multibool::llama::cli
