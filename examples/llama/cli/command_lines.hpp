#pragma once
// multibool-llama's command lines: each command's option table and summary, and what its options
// mean once checked, before any file is read. Kept apart from the runs (<command>_command.cpp), which
// start from these values, so that the command-line fuzz target and the tests link
// command_lines.cpp without the handlers' model loading, conversion and training.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "llama/cli/options.hpp"
#include "llama/cli/supported_shapes.hpp"
#include "llama/conversion.hpp"
#include "llama/finetune_options.hpp"

namespace multibool::llama::cli {

// The tables, each with its check (every option value checked without reading a file) and no run:
// <command>_command() in <command>_command.cpp adds it.
Command perplexity_command_line();
Command generate_command_line();
Command finetune_command_line();
Command quantize_command_line();
Command tokenize_command_line();

// The options that choose and build the model, shared by perplexity, generate and quantize;
// converted_files: --model may also name a converted model file.
std::vector<OptionSpec> model_options(bool converted_files);

struct ModelChoice {
    enum class Kind { float_model, model_file, gguf_q1_0, fine_tune_checkpoint, kernels, budget, rtn, gptq };
    Kind kind = Kind::float_model;
    std::filesystem::path path;
    std::size_t kernels = 0;
    std::size_t group = default_group;
    bool row_column = false;
    double bits = 0.0;
    bool kl_allocation = false;  // --bits: candidates weighed by KL sensitivity, else by output error
    ConversionOptions conversion;
};

// The model the options ask for; choose_model (model_choice.hpp) then reads what --model holds.
ModelChoice requested_model(const ParsedOptions& options);

// perplexity's --protocol and --ctx; the context defaults to the model's.
struct ProtocolChoice {
    bool llama_cpp = false;
    std::optional<std::size_t> context;
};
ProtocolChoice protocol_option(const ParsedOptions& options);

// generate's own options.
struct GenerationChoice {
    std::string prompt;
    std::size_t steps = 0;
    float temperature = 0.0f;
    std::uint64_t seed = 0;
};
GenerationChoice generation_options(const ParsedOptions& options);

// finetune's options; kernels and group are a resumed run's only once its checkpoint is read.
struct FineTuneCommandLine {
    std::optional<std::string> resume;
    std::filesystem::path out;
    std::size_t threads = 0;
    Initializer initializer = Initializer::activation_aware;
    std::size_t kernels = 0;
    std::size_t group = 0;
    FineTuneOptions fine_tune;               // for a new run; a resumed one reads its own
    std::vector<std::size_t> hidden_blocks;  // --hidden-blocks, empty for all; checked against the model later
};
FineTuneCommandLine fine_tune_command_line(const ParsedOptions& options);

// --hidden-blocks as a mask over the model's layers (empty: all).
std::vector<bool> hidden_block_mask(const std::vector<std::size_t>& blocks, std::size_t layers);

}  // namespace multibool::llama::cli
