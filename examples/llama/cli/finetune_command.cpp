// multibool-llama finetune: the options of a fine-tuning run, checked before any file is read
// where they can be, then the dispatch to the fine-tuning of the run's K (finetune_run.hpp).
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/cli/commands.hpp"
#include "llama/cli/finetune_run.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/cli/supported_shapes.hpp"
#include "llama/finetune_checkpoint.hpp"
#include "llama/finetune_options.hpp"
#include "llama/tokenizer.hpp"

namespace multibool::llama::cli {

namespace {

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

int run_finetune(const ParsedOptions& options) {
    const auto resume = options.text("resume");
    const auto out_option = options.text("out");
    if (!resume && !out_option) throw UsageError("give --out CKPT (or --resume CKPT)");
    const std::filesystem::path out = out_option.value_or(resume.value_or(""));
    const std::size_t threads = thread_count(options);
    if (resume) {
        if (const OptionSpec* fixed = options.first_given_with(defines_run)) {
            throw UsageError("--" + fixed->name + " is fixed by the checkpoint being resumed; drop it");
        }
    }
    const Initializer initializer = initializer_option(options);
    std::size_t kernels = *options.count("kernels");
    std::size_t group = *options.count("group");
    if (resume) {
        const FineTuneHeader header = read_fine_tune_header(*resume);
        kernels = header.kernels;
        group = header.group_size;
    }
    require_supported(kernels, group);

    FineTuneOptions fine_tune = parse_fine_tune_options(options);
    const std::vector<std::size_t> hidden_blocks = parse_hidden_blocks(options);
    // The training loop reads these after the model is converted: a typo must fail now instead.
    for (const char* name : {"steps", "eval-every", "save-every"}) static_cast<void>(options.count(name));
    if (!resume && *options.count("steps") == 0) throw UsageError("--steps takes at least 1 for a new run");
    const std::filesystem::path model_path = options.path("model");
    std::cerr << "loading " << model_path.string() << "\n";
    const Checkpoint teacher = load_float_checkpoint(model_path);
    fine_tune.loss.hidden_blocks = hidden_block_mask(hidden_blocks, teacher.config().n_layers);
    // Checked now, not at the first checkpoint: the checkpoint's header must hold the model.
    check_llama2c_header(teacher.config(), model_path.string());
    // A model with a shorter context (llama.cpp's GGUF of stories260K states 128) trains on windows of that length.
    if (!resume && !options.given("seq")) fine_tune.length = std::min(fine_tune.length, teacher.config().seq_len);
    try {
        if (!resume) check_fine_tune_options(fine_tune, teacher.config());
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }
    const TextTokenizer tokenizer = load_matching_tokenizer(options, teacher.config());
    // Training windows and the checkpoint's validation start with llama2.c's BOS id.
    if (tokenizer.required_bos() != Tokenizer::bos) {
        throw std::runtime_error("fine-tuning starts every window with BOS id " + std::to_string(Tokenizer::bos) +
                                 " (llama2.c's and LLaMA's SentencePiece id); this " + std::string(tokenizer.kind()) +
                                 " vocabulary's BOS is " + std::to_string(tokenizer.required_bos()));
    }
    const std::filesystem::path train_path = options.path("train");
    const std::filesystem::path valid_path = options.path("valid");
    const std::vector<int> train = tokenizer.encode(read_text_file(train_path), false, false);
    const std::vector<int> valid = tokenizer.encode(read_text_file(valid_path), false, false);
    std::cerr << train_path.string() << ": " << train.size() << " tokens; " << valid_path.string() << ": "
              << valid.size() << " tokens; " << threads << " thread(s)\n";
    const FineTuneRun run{options, teacher, train, valid, fine_tune, initializer, resume, out, threads};
    int status = exit_success;
    with_kernels(kernels, [&]<std::size_t K>() { status = fine_tune_with_kernels<K>(group, run); });
    return status;
}

}  // namespace

Command finetune_command() {
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
        {"steps", "N", "total steps of the run (default {}; a resumed run keeps its own)", "2000"},
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
        std::move(options), run_finetune};
}

}  // namespace multibool::llama::cli
