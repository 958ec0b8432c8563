// Fuzz target for multibool-llama's command lines: the input is argv after the program name, its
// arguments separated by NUL bytes (so an empty argument is two NULs in a row). Each command's
// check (command_lines.hpp), which the tool runs before reading any file, may refuse only with a
// UsageError. A command line it accepts then meets the tiny model: fine-tuning options are bounded
// against its sizes (check_fine_tune_options: std::invalid_argument; accepted ones must not wrap
// batch x seq), --hidden-blocks holds one block per comma-separated piece and is checked against its
// layers, a baseline's group size gives every row a group, and a --bits budget is checked against
// its projections (check_budget).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <multibool/core/group_size.hpp>

#include "fuzz/fuzz_target.hpp"
#include "fuzz/tiny_model.hpp"
#include "llama/cli/command_lines.hpp"

namespace multibool::fuzz {
namespace {

using namespace llama::cli;

const std::vector<Command>& command_lines() {
    static const std::vector<Command> all = {perplexity_command_line(), generate_command_line(),
                                             finetune_command_line(), quantize_command_line(), tokenize_command_line()};
    return all;
}

std::vector<std::string> arguments(Bytes input) {
    std::vector<std::string> args(1);
    for (const std::uint8_t byte : input) {
        if (byte == 0) {
            args.emplace_back();
        } else {
            args.back().push_back(static_cast<char>(byte));
        }
    }
    return args;
}

template <class F>
bool refused_as_usage(F&& f) {
    try {
        f();
        return false;
    } catch (const UsageError&) {
        return true;
    }
}

template <class F>
void allowing_invalid_argument(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument&) {
    }
}

// What the tool does next with an accepted command line, against the tiny model instead of a file.
void meet_tiny_model(const Command& command, const ParsedOptions& options) {
    const llama::Config config = tiny_config();
    if (command.name == "finetune") {
        const FineTuneCommandLine line = fine_tune_command_line(options);
        std::vector<bool> mask;
        const std::string blocks = *options.text("hidden-blocks");
        require(blocks == "all" || line.hidden_blocks.size() == std::size_t(std::ranges::count(blocks, ',')) + 1,
                "--hidden-blocks lost or gained a block: '" + blocks + "'");
        if (!refused_as_usage([&] { mask = hidden_block_mask(line.hidden_blocks, config.n_layers); })) {
            require(mask.empty() == line.hidden_blocks.empty(), "--hidden-blocks lost its blocks");
            require(mask.empty() || mask.size() == config.n_layers, "the --hidden-blocks mask is not one per layer");
        }
        if (line.resume) return;
        llama::FineTuneOptions o = line.fine_tune;
        o.loss.hidden_blocks = mask;
        if (!options.given("seq")) o.length = std::min(o.length, config.seq_len);
        bool accepted = false;
        allowing_invalid_argument([&] {
            static_cast<void>(llama::check_fine_tune_options(o, config));
            accepted = true;
        });
        std::size_t tokens = 0;
        require(!accepted || !__builtin_mul_overflow(o.batch, o.length, &tokens),
                "options whose batch x seq wraps a size_t were accepted");
        return;
    }
    if (command.name == "tokenize") return;
    const ModelChoice choice = requested_model(options);
    if (choice.kind == ModelChoice::Kind::kernels && !choice.row_column) {
        require(is_supported(choice.kernels, choice.group), "an unsupported (K, G) was accepted");
    }
    if (choice.kind == ModelChoice::Kind::rtn || choice.kind == ModelChoice::Kind::gptq) {
        require(group_count(config.dim, choice.group) >= 1, "a baseline group size leaves a row with no group");
    }
    if (choice.kind == ModelChoice::Kind::budget) {
        allowing_invalid_argument(
            [&] { with_group(choice.group, [&]<std::size_t G>() { llama::check_budget<G>(config, choice.bits); }); });
    }
}

bool run_command_line(Bytes input) {
    const std::vector<std::string> args = arguments(input);
    const Command* command = nullptr;
    for (const Command& c : command_lines()) {
        if (c.name == args[0]) command = &c;
    }
    if (command == nullptr) return false;
    std::vector<char*> argv;
    for (std::size_t i = 1; i < args.size(); ++i) argv.push_back(const_cast<char*>(args[i].c_str()));
    std::optional<ParsedOptions> options;
    if (refused_as_usage([&] { options.emplace(*command, argv); })) return false;
    if (options->help()) return true;
    if (refused_as_usage([&] { command->check(*options); })) return false;
    meet_tiny_model(*command, *options);
    return true;
}

std::string joined(std::initializer_list<std::string_view> args) {
    std::string bytes;
    for (const std::string_view a : args) {
        if (!bytes.empty()) bytes.push_back('\0');
        bytes += a;
    }
    return bytes;
}

std::vector<Seed> command_line_seeds() {
    return {
        {"perplexity-defaults", joined({"perplexity"})},
        {"perplexity-kernels", joined({"perplexity", "--kernels", "3", "--group", "64", "--threads", "2"})},
        {"perplexity-rowcol", joined({"perplexity", "--kernels", "2", "--scales", "rowcol", "--init", "greedy"})},
        {"perplexity-rtn", joined({"perplexity", "--rtn", "4", "--group", "32"})},
        {"perplexity-gptq", joined({"perplexity", "--gptq", "3", "--calibration-tokens", "4096"})},
        {"perplexity-llama-cpp", joined({"perplexity", "--protocol", "llama.cpp", "--ctx", "128"})},
        {"generate-sampled", joined({"generate", "--prompt", "Once", "--steps", "64", "--temperature", "0.8"})},
        {"quantize-bits", joined({"quantize", "--bits", "2.5", "--allocation", "output-error", "--out", "m.mbool"})},
        {"finetune-new", joined({"finetune", "--out", "run.ckpt", "--kernels", "3", "--batch", "8", "--seq", "8"})},
        {"finetune-bold", joined({"finetune", "--out", "run.ckpt", "--policy", "bold", "--accumulator", "half",
                                  "--flip-rate", "2", "--lr-schedule", "cosine", "--warmup", "20"})},
        {"finetune-loss", joined({"finetune", "--out", "run.ckpt", "--kl", "1", "--hidden", "0.5", "--ce", "0.1",
                                  "--hidden-blocks", "0,1", "--teacher-sequences", "2"})},
        {"finetune-resume", joined({"finetune", "--resume", "run.ckpt", "--steps", "300", "--export", "m.mbool"})},
        {"tokenize-text", joined({"tokenize", "--tokenizer", "tok512.bin", "--text", "Hello", "--bos"})},
        {"help", joined({"finetune", "--help"})},
    };
}

const Registration command_line{"command_line", run_command_line, command_line_seeds};

}  // namespace
}  // namespace multibool::fuzz
