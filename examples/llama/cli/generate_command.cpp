// multibool-llama generate: a prompt continued, greedy or sampled.
#include <iostream>
#include <string>
#include <string_view>
#include <variant>

#include "llama/cli/command_lines.hpp"
#include "llama/cli/commands.hpp"
#include "llama/cli/model_choice.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/generation.hpp"

namespace multibool::llama::cli {

namespace {

int run_generate(const ParsedOptions& options) {
    const GenerationChoice generation = generation_options(options);
    Sampler sampler(generation.temperature, generation.seed);
    const ModelChoice choice = choose_model(options);
    const LoadedModel loaded = load_chosen_model(choice, options);
    std::visit(
        [&](const auto& model) {
            const TextTokenizer tokenizer = load_matching_tokenizer(options, model.config());
            const GenerationResult result = generate(model, tokenizer, generation.prompt, generation.steps, sampler,
                                                     [](std::string_view piece) { std::cout << piece << std::flush; });
            std::cout << "\n";
            std::cerr << result.prompt_tokens << " prompt tokens in " << result.prefill_seconds << " s, "
                      << result.generated() << " generated in " << result.decode_seconds << " s\n"
                      << "tokens/s: " << result.tokens_per_second() << "\n";
        },
        loaded.model);
    return exit_success;
}

}  // namespace

Command generate_command() { return with_run(generate_command_line(), run_generate); }

}  // namespace multibool::llama::cli
