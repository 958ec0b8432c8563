#pragma once
// multibool-llama's commands, each defined with its options and handler in its own file.
#include "llama/cli/options.hpp"

namespace multibool::llama::cli {

Command perplexity_command();
Command generate_command();
Command finetune_command();
Command quantize_command();
Command tokenize_command();

}  // namespace multibool::llama::cli
