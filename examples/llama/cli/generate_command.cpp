// multibool-llama generate: a prompt continued, greedy or sampled.
#include <iostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "llama/cli/commands.hpp"
#include "llama/cli/model_choice.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/generation.hpp"

namespace multibool::llama::cli {

namespace {

// A KV cache is allocated for all the steps at once: a bound far above any model's context.
constexpr std::size_t max_generation_steps = std::size_t{1} << 20;

int run_generate(const ParsedOptions& options) {
    const std::string prompt = *options.text("prompt");
    const std::size_t steps = *options.count("steps");
    if (steps == 0 || steps > max_generation_steps) {
        throw UsageError("--steps takes 1.." + std::to_string(max_generation_steps) + ", found " +
                         std::to_string(steps));
    }
    const float temperature = *options.real("temperature");
    if (temperature < 0.0f) throw UsageError("--temperature must be >= 0");
    Sampler sampler(temperature, *options.count("seed"));
    const ModelChoice choice = choose_model(options);
    const LoadedModel loaded = load_chosen_model(choice, options);
    std::visit(
        [&](const auto& model) {
            const TextTokenizer tokenizer = load_matching_tokenizer(options, model.config());
            const GenerationResult result = generate(model, tokenizer, prompt, steps, sampler,
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

Command generate_command() {
    std::vector<OptionSpec> options = model_options(true);
    options.insert(options.end(), {
                                      {"prompt", "P", "text to continue (default: \"{}\")", "Once upon a time"},
                                      {"steps", "N", "forward passes, prompt included (default {})", "256"},
                                      {"temperature", "X", "{} for greedy (default), higher for more varied text", "0"},
                                      {"seed", "S", "seed of the sampler when temperature > 0 (default {})", "42"},
                                  });
    return {"generate", "continue a prompt, greedy or sampled",
            "Continues a prompt with llama2.c's run loop: greedy at temperature 0 (as llama2.c), otherwise\n"
            "sampled from softmax(logits / temperature). The text goes to stdout; stderr ends with\n"
            "'tokens/s: <value>' (decoding, prefill excluded).",
            std::move(options), run_generate};
}

}  // namespace multibool::llama::cli
