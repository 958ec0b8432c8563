// multibool-llama: perplexity, generation, conversion, fine-tuning and tokenization of LLaMA models
// (llama2.c checkpoints, GGUF files), float or with every projection as K Boolean kernels with
// group-G scales. Run with --help for the options. Each command's options and their checks are in
// llama/cli/command_lines.cpp, its handler in llama/cli/<command>_command.cpp.
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llama/cli/commands.hpp"
#include "llama/cli/options.hpp"

namespace {

using namespace multibool::llama::cli;

const std::vector<Command>& commands() {
    static const std::vector<Command> list = {perplexity_command(), generate_command(), finetune_command(),
                                              quantize_command(), tokenize_command()};
    return list;
}

const Command& command_named(std::string_view name) {
    for (const auto& c : commands()) {
        if (c.name == name) return c;
    }
    throw UsageError("unknown command '" + std::string(name) + "'");
}

}  // namespace

int main(int argc, char** argv) {
    const std::span<char*> args(argv, std::size_t(argc));
    if (args.size() < 2 || std::string_view(args[1]) == "--help" || std::string_view(args[1]) == "-h") {
        (args.size() < 2 ? std::cerr : std::cout) << tool_usage(commands());
        return args.size() < 2 ? exit_usage_error : exit_success;
    }
    const Command* command = nullptr;
    try {
        command = &command_named(args[1]);
        const ParsedOptions options(*command, args.subspan(2));
        if (options.help()) {
            std::cout << usage(*command);
            return exit_success;
        }
        if (command->check != nullptr) command->check(options);
        return command->run(options);
    } catch (const UsageError& e) {
        std::cerr << "multibool-llama: " << e.what() << "\n"
                  << "run 'multibool-llama " << (command ? command->name + " " : std::string())
                  << "--help' for usage\n";
        return exit_usage_error;
    } catch (const std::exception& e) {
        std::cerr << "multibool-llama: error: " << e.what() << "\n";
        return exit_failure;
    }
}
