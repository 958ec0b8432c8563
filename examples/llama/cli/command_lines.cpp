// multibool-llama's option tables and the checks of option values that need no file.
#include "llama/cli/command_lines.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <system_error>
#include <utility>

#include "llama/cli/model_inputs.hpp"
#include "llama/perplexity.hpp"

namespace multibool::llama::cli {

namespace {

constexpr std::size_t max_baseline_bits = 8;  // --rtn and --gptq
constexpr std::size_t max_llama_cpp_context = std::size_t{1} << 20;
// A KV cache is allocated for all of generate's steps at once: a bound far above any model's context.
constexpr std::size_t max_generation_steps = std::size_t{1} << 20;

// The options that define a fine-tuning run (stored in its checkpoint), from the command line.
FineTuneOptions parse_fine_tune_options(const ParsedOptions& options) {
    FineTuneOptions o;
    const std::string policy = *options.text("policy");
    const auto kind = parse_flip_policy(policy);
    if (!kind)
        throw UsageError("--policy takes bold or expected-improvement (alias stochastic), found '" + policy + "'");
    o.policy = *kind;
    const std::string trained = *options.text("train-kernels");
    if (trained != "last" && trained != "all") {
        throw UsageError("--train-kernels takes last or all, found '" + trained + "'");
    }
    o.train_all_kernels = trained == "all";
    const std::string accumulator = *options.text("accumulator");
    const auto storage = parse_accumulator(accumulator);
    if (!storage) throw UsageError("--accumulator takes float, half or int8, found '" + accumulator + "'");
    if (o.policy != FlipPolicyKind::bold && options.given("accumulator")) {
        throw UsageError("--accumulator is BOLD's; --policy " + policy + " keeps no accumulator");
    }
    o.accumulator = *storage;
    o.batch = *options.count("batch");
    o.length = *options.count("seq");
    o.seed = *options.count("seed");
    if (const auto rate = options.real("flip-rate")) o.flip_rate = *rate;
    o.scale_learning_rate = *options.real("lr");
    o.float_learning_rate = *options.real("float-lr");
    o.train_float = o.float_learning_rate > 0;
    o.loss.kl_weight = *options.real("kl");
    o.loss.hidden_weight = *options.real("hidden");
    o.loss.cross_entropy_weight = *options.real("ce");
    o.loss.temperature = *options.real("temperature");
    const auto schedule = [&](const char* name) {
        const std::string text = *options.text(name);
        const auto shape = parse_schedule_shape(text);
        if (!shape)
            throw UsageError(std::string("--") + name + " takes constant, linear or cosine, found '" + text + "'");
        return Schedule{*shape, *options.count("warmup")};
    };
    o.learning_rate_schedule = schedule("lr-schedule");
    o.flip_schedule = schedule("flip-schedule");
    o.teacher_sequences = options.count("teacher-sequences").value_or(o.batch / 4);
    return o;
}

// --hidden-blocks as block numbers (empty: all), checked against the model once it is read.
std::vector<std::size_t> parse_hidden_blocks(const ParsedOptions& options) {
    const std::string text = *options.text("hidden-blocks");
    std::vector<std::size_t> blocks;
    if (text == "all") return blocks;
    // Every piece between commas must be a number: "", "0," and "1,,2" are refused, not read as
    // "all" or with the empty pieces dropped.
    for (std::size_t begin = 0;;) {
        const std::size_t comma = std::min(text.find(',', begin), text.size());
        const std::string_view item = std::string_view(text).substr(begin, comma - begin);
        std::size_t block = 0;
        const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), block);
        if (item.empty() || error != std::errc() || end != item.data() + item.size()) {
            throw UsageError("--hidden-blocks takes all or block numbers separated by commas, found '" + text + "'");
        }
        blocks.push_back(block);
        if (comma == text.size()) return blocks;
        begin = comma + 1;
    }
}

}  // namespace

std::vector<OptionSpec> model_options(bool converted_files) {
    return {
        {"model", "M",
         converted_files ? "llama2.c checkpoint, GGUF file (float, or Q1_0 kernels run as they are), converted "
                           "multibool model file or fine-tuning checkpoint (its student) (default: {})"
                         : "llama2.c checkpoint or GGUF file (default: {})",
         asset("stories260K.bin").string()},
        tokenizer_option(),
        {"kernels", "K", "Boolean kernels per weight, 1..4; 0 or absent: float (a converted file sets its own)"},
        {"bits", "B", "instead of --kernels: K per projection (1..4) within an average of B bits/weight"},
        group_option(),
        {"scales", "S",
         "{} (default: fp16 scale per kernel, row and group) or rowcol (row x column, docs/METHOD.md §1)", "group"},
        {"init", "I", "greedy, alternating or {} (default; calibrated on --calibration)", "act-aware"},
        {"iterations", "N", "alternating refinement rounds (default {})", number_text(ConversionOptions{}.iterations)},
        {"calibration", "F", "text the float model reads to calibrate act-aware (default: {})",
         asset("tinystories-train.txt").string()},
        {"calibration-tokens", "N", "tokens of the calibration text used (default {})",
         number_text(default_calibration_tokens)},
        {"allocation", "A",
         "with --bits, what weighs each projection's candidates: {} (default; the KL to the float model with only "
         "that projection converted, over --sensitivity-tokens of --calibration) or output-error (the summed "
         "squared output error)",
         "kl"},
        {"sensitivity-tokens", "N", "tokens of the calibration text the KL allocation scores (default {})", "2048"},
        {"rtn", "B",
         "baseline instead of Boolean kernels: round-to-nearest B-bit (1..8), fp16 scale and min per group"},
        {"gptq", "B",
         "baseline instead of Boolean kernels: GPTQ B-bit (1..8), fp16 scale and integer zero per group, "
         "calibrated on --calibration"},
    };
}

ModelChoice requested_model(const ParsedOptions& options) {
    ModelChoice choice;
    choice.path = options.path("model");
    const auto kernels = options.count("kernels");
    const bool group_given = options.given("group");
    const std::size_t group = *options.count("group");
    const auto bits = options.real("bits");
    const auto rtn = options.count("rtn");
    const auto gptq_bits = options.count("gptq");
    const std::string scales = *options.text("scales");
    choice.conversion.initializer = initializer_option(options);
    if (scales != "group" && scales != "rowcol") {
        throw UsageError("--scales takes group or rowcol, found '" + scales + "'");
    }
    choice.conversion.iterations = *options.count("iterations");
    // Read now so that a typo is a usage error, although only some conversions use them.
    static_cast<void>(options.count("calibration-tokens"));
    static_cast<void>(options.count("sensitivity-tokens"));
    choice.row_column = scales == "rowcol";
    choice.group = group;
    if (int(kernels.value_or(0) != 0) + int(bits.has_value()) + int(rtn.has_value()) + int(gptq_bits.has_value()) > 1) {
        throw UsageError("choose one of --kernels, --bits, --rtn and --gptq");
    }
    if (kernels.value_or(0) != 0) {
        choice.kind = ModelChoice::Kind::kernels;
        choice.kernels = *kernels;
        if (choice.row_column) {
            if (group_given) throw UsageError("--group does not apply to --scales rowcol");
            if (!is_supported_kernels(choice.kernels)) {
                throw UsageError("K=" + std::to_string(choice.kernels) +
                                 " is not supported; supported: " + supported_values());
            }
        } else {
            require_supported(choice.kernels, choice.group);
        }
    } else if (bits) {
        choice.kind = ModelChoice::Kind::budget;
        choice.bits = *bits;
        const std::string allocation = *options.text("allocation");
        if (allocation != "kl" && allocation != "output-error") {
            throw UsageError("--allocation takes kl or output-error, found '" + allocation + "'");
        }
        choice.kl_allocation = allocation == "kl";
        if (choice.kl_allocation && *options.count("sensitivity-tokens") < 2) {
            throw UsageError("--sensitivity-tokens takes at least 2 tokens");
        }
        if (choice.row_column) throw UsageError("--bits allocates group-scale kernels; drop --scales rowcol");
        require_supported(supported_kernels[0], choice.group);
    } else if (rtn || gptq_bits) {
        choice.kind = rtn ? ModelChoice::Kind::rtn : ModelChoice::Kind::gptq;
        const std::size_t b = rtn ? *rtn : *gptq_bits;
        if (b < 1 || b > max_baseline_bits) {
            throw UsageError(std::string(rtn ? "--rtn" : "--gptq") + " takes 1.." + std::to_string(max_baseline_bits) +
                             " bits, found " + std::to_string(b));
        }
        choice.bits = double(b);
        const std::string name = rtn ? "--rtn" : "--gptq";
        if (choice.group == 0) throw UsageError(name + " needs a --group of at least 1 column");
        if (choice.row_column) throw UsageError(name + " has a scale per group; drop --scales rowcol");
    } else if (group_given || options.given("scales") || options.given("init")) {
        throw UsageError(
            "--group, --scales and --init need --kernels, --bits, --rtn or --gptq (a float model has none)");
    }
    return choice;
}

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

GenerationChoice generation_options(const ParsedOptions& options) {
    GenerationChoice choice;
    choice.prompt = *options.text("prompt");
    choice.steps = *options.count("steps");
    if (choice.steps == 0 || choice.steps > max_generation_steps) {
        throw UsageError("--steps takes 1.." + std::to_string(max_generation_steps) + ", found " +
                         std::to_string(choice.steps));
    }
    choice.temperature = *options.real("temperature");
    if (choice.temperature < 0.0f) throw UsageError("--temperature must be >= 0");
    choice.seed = *options.count("seed");
    return choice;
}

FineTuneCommandLine fine_tune_command_line(const ParsedOptions& options) {
    FineTuneCommandLine line;
    line.resume = options.text("resume");
    const auto out = options.text("out");
    if (!line.resume && !out) throw UsageError("give --out CKPT (or --resume CKPT)");
    line.out = out.value_or(line.resume.value_or(""));
    line.threads = thread_count(options);
    if (line.resume) {
        if (const OptionSpec* fixed = options.first_given_with(defines_run)) {
            throw UsageError("--" + fixed->name + " is fixed by the checkpoint being resumed; drop it");
        }
    }
    line.initializer = initializer_option(options);
    line.kernels = *options.count("kernels");
    line.group = *options.count("group");
    if (!line.resume) require_supported(line.kernels, line.group);
    line.fine_tune = parse_fine_tune_options(options);
    line.hidden_blocks = parse_hidden_blocks(options);
    // The training loop reads these after the model is converted: a typo must fail now instead.
    for (const char* name : {"steps", "eval-every", "save-every"}) static_cast<void>(options.count(name));
    if (!line.resume && *options.count("steps") == 0) throw UsageError("--steps takes at least 1 for a new run");
    return line;
}

std::vector<bool> hidden_block_mask(const std::vector<std::size_t>& blocks, std::size_t layers) {
    if (blocks.empty()) return {};
    std::vector<bool> mask(layers, false);
    for (const std::size_t block : blocks) {
        if (block >= layers) {
            throw UsageError("--hidden-blocks names block " + std::to_string(block) + "; the model has blocks 0.." +
                             std::to_string(layers - 1));
        }
        mask[block] = true;
    }
    return mask;
}

Command perplexity_command_line() {
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
            std::move(options), [](const ParsedOptions& o) {
                static_cast<void>(thread_count(o));
                static_cast<void>(protocol_option(o));
                static_cast<void>(requested_model(o));
            }};
}

Command generate_command_line() {
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
            std::move(options), [](const ParsedOptions& o) {
                static_cast<void>(generation_options(o));
                static_cast<void>(requested_model(o));
            }};
}

Command quantize_command_line() {
    std::vector<OptionSpec> options = model_options(false);
    options.push_back(
        {"out", "F", "the model file to write: F.gguf (K=1, G=128 from a GGUF model: Q1_0) or a multibool file"});
    return {"quantize", "convert a checkpoint, print the per-projection table, write a model file",
            "Converts a llama2.c checkpoint or GGUF model and prints each projection's shape, K, G, bits per weight "
            "(scales\n"
            "and padding counted), relative Frobenius error and, when calibrated, relative output error\n"
            "E||(W - W_hat) x||^2 / E||W x||^2 (square-rooted), then the totals. --out writes a model file\n"
            "(fixed K with group scales); a name ending in .gguf writes, from a GGUF --model converted with\n"
            "--kernels 1 --group 128, a GGUF file whose projections are Q1_0 (the source's other tensors,\n"
            "metadata and vocabulary copied) for llama.cpp or multibool to run.",
            std::move(options), [](const ParsedOptions& o) { static_cast<void>(requested_model(o)); }};
}

Command tokenize_command_line() {
    return {"tokenize",
            "print the token ids of a text",
            "Tokenizes a text with the vocabulary of --tokenizer, else of the GGUF --model (a llama2.c\n"
            "tokenizer file, or a GGUF file's SentencePiece or byte-level BPE vocabulary, tokenized as\n"
            "llama.cpp does). stdout holds the ids, one per line, and nothing else.",
            {
                {"model", "M", "a GGUF model whose vocabulary is used"},
                tokenizer_option(),
                {"text", "TXT", "the text itself"},
                {"text-file", "F", "instead of --text: a file holding the text"},
                {"bos", "", "start with the BOS token"},
            },
            [](const ParsedOptions& o) {
                if (!o.given("model") && !o.given("tokenizer")) {
                    throw UsageError("give --model or --tokenizer (a GGUF file or a llama2.c tokenizer file)");
                }
                if (o.given("text") == o.given("text-file")) throw UsageError("give one of --text and --text-file");
            }};
}

Command finetune_command_line() {
    const FineTuneOptions defaults;
    const std::string policy_rates = std::string(flip_policy_name(FlipPolicyKind::expected_improvement)) + " " +
                                     number_text(FineTuneOptions::default_expected_improvement_rate) + ", " +
                                     flip_policy_name(FlipPolicyKind::bold) + " " +
                                     number_text(FineTuneOptions::default_bold_rate);
    std::vector<OptionSpec> options = {
        {"model", "M", "float llama2.c checkpoint or GGUF file, the teacher (default: {})",
         asset("stories260K.bin").string(), names_input_file},
        tokenizer_option(names_input_file),
        {"train", "F", "training text (default: {})", asset("tinystories-train.txt").string(), names_input_file},
        {"valid", "F", "validation text (default: {})", asset("tinystories-valid.txt").string(), names_input_file},
        {"kernels", "K", "Boolean kernels per weight, 1..4 (default {})", "2", defines_run},
        group_option(defines_run),
        {"init", "I", "greedy, alternating or {} (default; calibrated on --train)", "act-aware", defines_run},
        {"policy", "P", "flip rule: {} (default) or expected-improvement (alias stochastic)",
         flip_policy_name(defaults.policy), defines_run},
        {"accumulator", "A",
         "BOLD's accumulator per weight: {} (default, 4 bytes), half (2) or int8 (1 + a scale per row)",
         accumulator_name(defaults.accumulator), defines_run},
        {"train-kernels", "W", "{} (default, the published recipe) or all", "last", defines_run},
        {"steps", "N", "total steps of the run (default {}; a resumed run keeps its own)", "1800"},
        {"batch", "B", "sequences per step (default {})", number_text(defaults.batch), defines_run},
        {"seq", "S", "tokens per sequence (default {}, or the model's context length when shorter)",
         number_text(defaults.length), defines_run},
        {"lr", "X", "AdamW learning rate of the scales (default {})", number_text(defaults.scale_learning_rate),
         defines_run},
        {"flip-rate", "X", "the policy's eta (default: " + policy_rates + ")", std::nullopt, defines_run},
        {"float-lr", "X", "AdamW learning rate of the embedding, norms and classifier, 0: frozen (default {})",
         number_text(defaults.float_learning_rate), defines_run},
        {"lr-schedule", "S",
         "multiplier of both learning rates over the planned steps: constant, linear or cosine decay to 0 (default "
         "{})",
         schedule_shape_name(defaults.learning_rate_schedule.shape), defines_run},
        {"flip-schedule", "S", "multiplier of the flip rate, as --lr-schedule (default {})",
         schedule_shape_name(defaults.flip_schedule.shape), defines_run},
        {"warmup", "N", "steps over which both multipliers first rise linearly to 1 (default {})",
         number_text(defaults.learning_rate_schedule.warmup), defines_run},
        {"teacher-sequences", "N",
         "of each batch's sequences, how many the teacher writes (sampled at temperature 1 from BOS); the rest "
         "are windows of --train (default: a quarter of --batch, " +
             number_text(defaults.teacher_sequences) + " of " + number_text(defaults.batch) + ")",
         std::nullopt, defines_run},
        {"kl", "X", "weight of KL(teacher || student) on the logits (default {})", number_text(defaults.loss.kl_weight),
         defines_run},
        {"hidden", "X", "gamma, weight of the hidden-state MSE (default {})", number_text(defaults.loss.hidden_weight),
         defines_run},
        {"hidden-blocks", "L", "blocks whose outputs are matched: {} (default) or a list like 0,2,4", "all",
         defines_run},
        {"ce", "X", "weight of next-token cross-entropy (default {}; alone: --kl 0 --hidden 0 --ce 1)",
         number_text(defaults.loss.cross_entropy_weight), defines_run},
        {"temperature", "X", "distillation temperature (default {})", number_text(defaults.loss.temperature),
         defines_run},
        {"seed", "S", "seed of the window draws and the expected-improvement policy (default {})",
         number_text(defaults.seed), defines_run},
        {"threads", "N", "threads sharing the batch (default: all hardware threads, at most 256)"},
        {"eval-every", "N", "steps between validation perplexities (default {}; the last step always)", "200"},
        {"save-every", "N", "steps between checkpoints (default {}; the last step always)", "50"},
        {"log", "F", "CSV log (default: the checkpoint path + .csv)", std::nullopt, names_input_file},
        {"out", "CKPT", "the checkpoint to write"},
        {"export", "F",
         "after the last step, also write a model file (fp16 scales) for perplexity/generate; with --resume of a "
         "finished run, only that"},
        {"resume", "CKPT",
         "continue the run saved in CKPT (the options that define the run are kept; --out defaults to CKPT)"},
    };
    return {
        "finetune", "fine-tune K Boolean kernels by distillation from the float model",
        "Converts the float checkpoint (--model, the teacher) to K Boolean kernels with group-G scales,\n"
        "then trains them in the Boolean domain (docs/METHOD.md §5): each step distills the teacher into the student\n"
        "on --batch windows of --seq tokens of --train (KL on the logits plus gamma x MSE of the hidden\n"
        "states), flips bits of the trainable kernels and moves the scales by AdamW. Writes a checkpoint\n"
        "to --out every --save-every steps (atomically), a CSV log, and the validation perplexity of --valid\n"
        "every --eval-every steps; Ctrl-C saves and stops. --resume CKPT continues a run bit-exactly.\n"
        "stdout ends with 'perplexity: <value> tokens: <count>' on --valid after the last step.",
        std::move(options), [](const ParsedOptions& o) { static_cast<void>(fine_tune_command_line(o)); }};
}

}  // namespace multibool::llama::cli
