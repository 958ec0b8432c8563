#pragma once
// multibool-llama's commands: each one's command line (command_lines.hpp) with its handler, defined in
// <command>_command.cpp.
#include "llama/cli/options.hpp"

namespace multibool::llama::cli {

Command perplexity_command();
Command generate_command();
Command finetune_command();
Command quantize_command();
Command tokenize_command();

}  // namespace multibool::llama::cli
