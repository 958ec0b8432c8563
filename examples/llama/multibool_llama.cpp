// multibool-llama: perplexity, generation and conversion of llama2.c models, float or with
// every projection as K Boolean kernels with group-G scales. Run with --help for the options.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <csignal>
#include <unistd.h>

#include "common/assets_path.hpp"
#include "llama/calibration.hpp"
#include "llama/checkpoint.hpp"
#include "llama/conversion.hpp"
#include "llama/finetune.hpp"
#include "llama/generation.hpp"
#include "llama/model_file.hpp"
#include "llama/perplexity.hpp"
#include "llama/tokenizer.hpp"
#include "llama/transformer.hpp"
#include "multibool/nn/dense_linear.hpp"

namespace {

namespace fs = std::filesystem;
using namespace multibool;
using namespace multibool::llama;

// A command-line mistake: reported with the subcommand's usage hint and exit status 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr std::size_t supported_kernels[] = {1, 2, 3, 4};
constexpr std::size_t supported_groups[] = {32, 64, 128};
constexpr std::size_t default_group = 64;
constexpr std::size_t max_threads = 256;

std::string supported_values() {
    const auto list = [](std::span<const std::size_t> values) {
        std::string text;
        for (std::size_t v : values) text += (text.empty() ? "" : ", ") + std::to_string(v);
        return "{" + text + "}";
    };
    return "K in " + list(supported_kernels) + " and G in " + list(supported_groups);
}

bool is_supported(std::size_t k, std::size_t g) {
    return std::ranges::find(supported_kernels, k) != std::end(supported_kernels) &&
           std::ranges::find(supported_groups, g) != std::end(supported_groups);
}

void require_supported(std::size_t k, std::size_t g) {
    if (!is_supported(k, g)) {
        throw UsageError("K=" + std::to_string(k) + ", G=" + std::to_string(g) +
                         " is not supported; supported: " + supported_values());
    }
}

// Calls f.template operator()<K, G>() for the compile-time instantiation matching (k, g).
template <class F>
void with_instantiation(std::size_t k, std::size_t g, F&& f) {
    require_supported(k, g);
    bool found = false;
    const auto try_group = [&]<std::size_t K, std::size_t G>() {
        if (!found && k == K && g == G) {
            found = true;
            f.template operator()<K, G>();
        }
    };
    const auto try_kernels = [&]<std::size_t K>() {
        try_group.template operator()<K, 32>();
        try_group.template operator()<K, 64>();
        try_group.template operator()<K, 128>();
    };
    try_kernels.template operator()<1>();
    try_kernels.template operator()<2>();
    try_kernels.template operator()<3>();
    try_kernels.template operator()<4>();
    if (!found) throw std::logic_error("multibool-llama: no instantiation for a supported K, G");
}

struct OptionSpec {
    std::string name;  // without the leading dashes
    std::string value_name;
    std::string help;
};

struct Command {
    std::string name;
    std::string brief;  // one line for the tool's usage
    std::string summary;
    std::vector<OptionSpec> options;
};

fs::path asset(const char* file) { return examples::assets_dir() / file; }

std::string usage(const Command& c) {
    std::ostringstream s;
    s << "usage: multibool-llama " << c.name << " [options]\n\n" << c.summary << "\n\noptions:\n";
    for (const auto& o : c.options) {
        std::string flag = "  --" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
        s << flag << std::string(flag.size() < 26 ? 26 - flag.size() : 1, ' ') << o.help << "\n";
    }
    s << "  --help                  this text\n";
    return s.str();
}

// The options that choose and build the model, shared by every command.
std::vector<OptionSpec> model_options(bool converted_files) {
    std::vector<OptionSpec> list;
    if (converted_files) {
        list.push_back({"model", "M",
                        "llama2.c checkpoint or converted multibool model file (default: " +
                            asset("stories260K.bin").string() + ")"});
    } else {
        list.push_back({"model", "M", "llama2.c checkpoint (default: " + asset("stories260K.bin").string() + ")"});
    }
    list.insert(
        list.end(),
        {
            {"tokenizer", "T", "llama2.c tokenizer file (default: " + asset("tok512.bin").string() + ")"},
            {"kernels", "K", "Boolean kernels per weight, 1..4; 0 or absent: float (a converted file sets its own)"},
            {"bits", "B", "instead of --kernels: K per projection (1..4) within an average of B bits/weight"},
            {"group", "G", "columns sharing one scale: 32, 64 or 128 (default 64)"},
            {"scales", "S", "group (default: fp16 scale per kernel, row and group) or rowcol (row x column, SPEC 1)"},
            {"init", "I", "greedy, alternating or act-aware (default; calibrated on --calibration)"},
            {"iterations", "N", "alternating refinement rounds (default 10)"},
            {"calibration", "F",
             "text the float model reads to calibrate act-aware (default: " + asset("tinystories-train.txt").string() +
                 ")"},
            {"calibration-tokens", "N", "tokens of the calibration text used (default 32768)"},
            {"rtn", "B",
             "baseline instead of Boolean kernels: round-to-nearest B-bit (1..8), fp16 scale and min per group"},
        });
    return list;
}

std::vector<OptionSpec> with(std::vector<OptionSpec> list, std::initializer_list<OptionSpec> more) {
    list.insert(list.end(), more);
    return list;
}

const std::vector<Command>& commands() {
    static const std::vector<Command> list = {
        {"perplexity", "perplexity of a text under the protocol of the shared assets",
         "Scores a text with the protocol of the shared assets README (chunks of 256 tokens, BOS first, an\n"
         "empty cache per chunk). Progress goes to stderr; stdout ends with one line\n"
         "'perplexity: <value> tokens: <count>'.",
         with(model_options(true),
              {{"text", "F", "text file to score (default: " + asset("tinystories-valid.txt").string() + ")"},
               {"threads", "N", "worker threads over chunks (default: all hardware threads)"}})},
        {"generate", "continue a prompt, greedy or sampled",
         "Continues a prompt with llama2.c's run loop: greedy at temperature 0 (as llama2.c), otherwise\n"
         "sampled from softmax(logits / temperature). The text goes to stdout; stderr ends with\n"
         "'tokens/s: <value>' (decoding, prefill excluded).",
         with(model_options(true),
              {{"prompt", "P", "text to continue (default: \"Once upon a time\")"},
               {"steps", "N", "forward passes, prompt included, at most the model's seq_len (default 256)"},
               {"temperature", "X", "0 for greedy (default), higher for more varied text"},
               {"seed", "S", "seed of the sampler when temperature > 0 (default 42)"}})},
        {"finetune", "fine-tune K Boolean kernels by distillation from the float model",
         "Converts the float checkpoint (--model, the teacher) to K Boolean kernels with group-G scales,\n"
         "then trains them in the Boolean domain (SPEC 5): each step distills the teacher into the student\n"
         "on --batch windows of --seq tokens of --train (KL on the logits plus gamma x MSE of the hidden\n"
         "states), flips bits of the trainable kernels and moves the scales by AdamW. Writes a checkpoint\n"
         "to --out every --save-every steps (atomically), a CSV log, and the validation perplexity of --valid\n"
         "every --eval-every steps; Ctrl-C saves and stops. --resume CKPT continues a run bit-exactly.\n"
         "stdout ends with 'perplexity: <value> tokens: <count>' on --valid after the last step.",
         {
             {"model", "M", "float llama2.c checkpoint, the teacher (default: " + asset("stories260K.bin").string() + ")"},
             {"tokenizer", "T", "llama2.c tokenizer file (default: " + asset("tok512.bin").string() + ")"},
             {"train", "F", "training text (default: " + asset("tinystories-train.txt").string() + ")"},
             {"valid", "F", "validation text (default: " + asset("tinystories-valid.txt").string() + ")"},
             {"kernels", "K", "Boolean kernels per weight, 1..4 (default 2)"},
             {"group", "G", "columns sharing one scale: 32, 64 or 128 (default 64)"},
             {"init", "I", "greedy, alternating or act-aware (default; calibrated on --train)"},
             {"policy", "P", "flip rule: stochastic (default) or bold"},
             {"train-kernels", "W", "last (default, the published recipe) or all"},
             {"steps", "N", "total steps of the run (default 1200; a resumed run keeps its own)"},
             {"batch", "B", "sequences per step (default 8)"},
             {"seq", "S", "tokens per sequence (default 256)"},
             {"lr", "X", "AdamW learning rate of the scales (default 3e-3)"},
             {"flip-rate", "X", "the policy's eta (default: stochastic 5e-5, bold 2)"},
             {"float-lr", "X", "AdamW learning rate of the embedding, norms and classifier; 0: frozen (default)"},
             {"kl", "X", "weight of KL(teacher || student) on the logits (default 1)"},
             {"hidden", "X", "gamma, weight of the hidden-state MSE (default 10)"},
             {"hidden-blocks", "L", "blocks whose outputs are matched: all (default) or a list like 0,2,4"},
             {"ce", "X", "weight of next-token cross-entropy (default 0; alone: --kl 0 --hidden 0 --ce 1)"},
             {"temperature", "X", "distillation temperature (default 1)"},
             {"seed", "S", "seed of the window draws and the stochastic policy (default 1)"},
             {"threads", "N", "threads sharing the batch (default: all hardware threads)"},
             {"eval-every", "N", "steps between validation perplexities (default 200; the last step always)"},
             {"save-every", "N", "steps between checkpoints (default 50; the last step always)"},
             {"log", "F", "CSV log (default: the checkpoint path + .csv)"},
             {"out", "CKPT", "the checkpoint to write"},
             {"export", "F", "after the last step, also write a model file (fp16 scales) for perplexity/generate"},
             {"resume", "CKPT", "continue the run saved in CKPT (the options that define the run are kept; --out defaults to CKPT)"},
         }},
        {"quantize", "convert a checkpoint, print the per-projection table, write a model file",
         "Converts a llama2.c checkpoint and prints each projection's shape, K, G, bits per weight (scales\n"
         "and padding counted), relative Frobenius error and, when calibrated, relative output error\n"
         "E||(W - W_hat) x||^2 / E||W x||^2 (square-rooted), then the totals. --out writes a model file\n"
         "(fixed K with group scales).",
         with(model_options(false), {{"out", "F", "the model file to write"}})},
    };
    return list;
}

const Command& command_spec(std::string_view name) {
    for (const auto& c : commands()) {
        if (c.name == name) return c;
    }
    throw UsageError("unknown command '" + std::string(name) + "'");
}

std::string tool_usage() {
    std::string s =
        "usage: multibool-llama <command> [options]\n\n"
        "Runs llama2.c models with float weights or K Boolean kernels per weight (multibool).\n\ncommands:\n";
    for (const auto& c : commands()) s += "  " + c.name + std::string(12 - c.name.size(), ' ') + c.brief + "\n";
    s += "\nRun 'multibool-llama <command> --help' for its options. Default files come from $MULTIBOOL_ASSETS\n"
         "(now " +
         examples::assets_dir().string() + ").\n";
    return s;
}

// Parsed --name value pairs of one subcommand, checked against its spec.
class Options {
public:
    Options(const Command& command, std::span<char*> args) : command_(command) {
        for (std::size_t i = 0; i < args.size(); ++i) {
            const std::string_view arg = args[i];
            if (arg == "--help" || arg == "-h") {
                help_ = true;
                continue;
            }
            if (!arg.starts_with("--")) throw UsageError("unexpected argument '" + std::string(arg) + "'");
            const std::string name(arg.substr(2));
            if (!known(name)) throw UsageError("unknown option --" + name + " for '" + command.name + "'");
            // A value that is itself an option means the real value was left out.
            if (i + 1 >= args.size() || std::string_view(args[i + 1]).starts_with("--")) {
                throw UsageError("option --" + name + " needs a value");
            }
            if (!values_.emplace(name, args[++i]).second) throw UsageError("option --" + name + " given twice");
        }
    }
    [[nodiscard]] bool help() const noexcept { return help_; }
    [[nodiscard]] std::optional<std::string> text(const std::string& name) const {
        const auto it = values_.find(name);
        if (it == values_.end()) return std::nullopt;
        return it->second;
    }
    [[nodiscard]] fs::path path(const std::string& name, const char* default_asset) const {
        return text(name).value_or(asset(default_asset).string());
    }
    // Digits only: std::stoull would accept " -1" (as 2^64 - 1) and "+7".
    [[nodiscard]] std::optional<std::size_t> count(const std::string& name) const {
        const auto value = text(name);
        if (!value) return std::nullopt;
        std::size_t parsed = 0;
        const auto [end, error] = std::from_chars(value->data(), value->data() + value->size(), parsed);
        if (value->empty() || error != std::errc() || end != value->data() + value->size()) {
            throw UsageError("--" + name + " takes a whole number >= 0, found '" + *value + "'");
        }
        return parsed;
    }
    [[nodiscard]] std::optional<float> real(const std::string& name) const {
        const auto value = text(name);
        if (!value) return std::nullopt;
        float parsed = 0.0f;
        const auto [end, error] = std::from_chars(value->data(), value->data() + value->size(), parsed);
        if (value->empty() || error != std::errc() || end != value->data() + value->size() || !std::isfinite(parsed)) {
            throw UsageError("--" + name + " takes a finite number, found '" + *value + "'");
        }
        return parsed;
    }

private:
    [[nodiscard]] bool known(const std::string& name) const {
        for (const auto& o : command_.options) {
            if (o.name == name) return true;
        }
        return false;
    }
    const Command& command_;
    std::map<std::string, std::string> values_;
    bool help_ = false;
};

std::string read_text_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Tokenizer load_matching_tokenizer(const fs::path& path, const Config& config) {
    Tokenizer tokenizer = load_tokenizer(path);
    if (tokenizer.vocab_size() != config.vocab_size) {
        throw std::runtime_error(path.string() + ": the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                                 " pieces, the model's vocab_size is " + std::to_string(config.vocab_size));
    }
    return tokenizer;
}

void print_totals(const ConversionReport& report, std::ostream& out) {
    const ErrorTally total = report.total();
    char line[512];
    std::snprintf(line, sizeof line,
                  "%s: %zu projections, %zu weights in %zu bytes (float32: %zu), %.4f bits/weight, relative error "
                  "%.4f, relative output error %.4f\n",
                  report.method.c_str(), report.projections.size(), total.weights, total.storage_bytes,
                  total.weights * sizeof(float), total.bits_per_weight(), total.relative_error(),
                  total.relative_output_error());
    out << line;
}

void print_table(const ConversionReport& report) {
    std::printf("%-5s %-4s %11s %2s %10s %10s %10s\n", "layer", "name", "shape", "K", "bits/w", "rel.error",
                "rel.output");
    for (const auto& p : report.projections) {
        const std::string shape = std::to_string(p.rows) + "x" + std::to_string(p.cols);
        std::printf("%-5zu %-4s %11s %2zu %10.4f %10.4f %10.4f\n", p.layer, projection_name(p.projection),
                    shape.c_str(), p.kernels, p.tally.bits_per_weight(), p.tally.relative_error(),
                    p.tally.relative_output_error());
    }
    std::fputs("total: ", stdout);
    std::ostringstream totals;
    print_totals(report, totals);
    std::fputs(totals.str().c_str(), stdout);
}

// What a run uses: a float model, a converted model file, or a checkpoint converted now (fixed K
// with group or row x column scales, K per projection under a bit budget, or the RTN baseline).
struct ModelChoice {
    enum class Kind { float_model, model_file, kernels, budget, rtn };
    Kind kind = Kind::float_model;
    fs::path path;
    std::size_t kernels = 0;
    std::size_t group = default_group;
    bool row_column = false;
    double bits = 0.0;
    ConversionOptions conversion;
};

std::optional<Initializer> parse_initializer(std::string_view name) {
    for (Initializer i : {Initializer::greedy, Initializer::alternating, Initializer::activation_aware}) {
        if (name == initializer_name(i)) return i;
    }
    return std::nullopt;
}

ModelChoice choose_model(const Options& options) {
    ModelChoice choice;
    choice.path = options.path("model", "stories260K.bin");
    const auto kernels = options.count("kernels");
    const auto group = options.count("group");
    const auto bits = options.real("bits");
    const auto rtn = options.count("rtn");
    const std::string scales = options.text("scales").value_or("group");
    const std::string init = options.text("init").value_or("act-aware");
    const auto initializer = parse_initializer(init);
    if (!initializer) throw UsageError("--init takes greedy, alternating or act-aware, found '" + init + "'");
    if (scales != "group" && scales != "rowcol")
        throw UsageError("--scales takes group or rowcol, found '" + scales + "'");
    choice.conversion.initializer = *initializer;
    choice.conversion.iterations = options.count("iterations").value_or(10);
    choice.row_column = scales == "rowcol";
    choice.group = group.value_or(default_group);
    if (int(kernels.value_or(0) != 0) + int(bits.has_value()) + int(rtn.has_value()) > 1) {
        throw UsageError("choose one of --kernels, --bits and --rtn");
    }
    if (kernels.value_or(0) != 0) {
        choice.kind = ModelChoice::Kind::kernels;
        choice.kernels = *kernels;
        if (choice.row_column) {
            if (group) throw UsageError("--group does not apply to --scales rowcol");
            if (std::ranges::find(supported_kernels, choice.kernels) == std::end(supported_kernels)) {
                throw UsageError("K=" + std::to_string(choice.kernels) +
                                 " is not supported; supported: " + supported_values());
            }
        } else {
            require_supported(choice.kernels, choice.group);
        }
    } else if (bits) {
        choice.kind = ModelChoice::Kind::budget;
        choice.bits = *bits;
        if (choice.row_column) throw UsageError("--bits allocates group-scale kernels; drop --scales rowcol");
        require_supported(1, choice.group);
    } else if (rtn) {
        choice.kind = ModelChoice::Kind::rtn;
        if (*rtn < 1 || *rtn > 8) throw UsageError("--rtn takes 1..8 bits, found " + std::to_string(*rtn));
        choice.bits = double(*rtn);
    } else if (group || options.text("scales") || options.text("init")) {
        throw UsageError("--group, --scales and --init need --kernels, --bits or --rtn (a float model has none)");
    }

    if (!fs::exists(choice.path)) throw std::runtime_error(choice.path.string() + ": no such file");
    if (!is_model_file(choice.path)) return choice;
    const ModelFileHeader header = read_model_header(choice.path);
    if (!is_supported(header.kernels, header.group_size)) {
        throw std::runtime_error(choice.path.string() + ": converted with K=" + std::to_string(header.kernels) +
                                 ", G=" + std::to_string(header.group_size) + ", which this tool does not support (" +
                                 supported_values() + ")");
    }
    const bool conflicting = (kernels && *kernels != header.kernels) || (group && *group != header.group_size);
    if (conflicting || bits || rtn || options.text("scales") || options.text("init")) {
        throw UsageError(choice.path.string() + " holds a model converted with K=" + std::to_string(header.kernels) +
                         ", G=" + std::to_string(header.group_size) +
                         "; conversion options (--kernels, --group, --bits, --rtn, --scales, --init) do not apply");
    }
    if (header.word_bits != 64) {
        throw std::runtime_error(choice.path.string() + ": written with " + std::to_string(header.word_bits) +
                                 "-bit plane words; this tool reads 64-bit ones");
    }
    choice.kind = ModelChoice::Kind::model_file;
    choice.kernels = header.kernels;
    choice.group = header.group_size;
    return choice;
}

// Calibration statistics for act-aware conversion (and for the output-space error column).
std::optional<CalibrationStatistics> calibrate_if_needed(const ModelChoice& choice, const Options& options,
                                                         const Checkpoint& checkpoint) {
    const bool needed =
        choice.kind != ModelChoice::Kind::float_model && choice.kind != ModelChoice::Kind::model_file &&
        (choice.conversion.initializer == Initializer::activation_aware || options.text("calibration").has_value());
    if (!needed) return std::nullopt;
    const fs::path text_path = options.path("calibration", "tinystories-train.txt");
    const std::size_t max_tokens = options.count("calibration-tokens").value_or(32768);
    const Tokenizer tokenizer = load_matching_tokenizer(options.path("tokenizer", "tok512.bin"), checkpoint.config());
    const std::vector<int> stream = tokenizer.encode(read_text_file(text_path), false, false);
    std::cerr << "calibrating on " << std::min(stream.size(), max_tokens) << " tokens of " << text_path.string()
              << "\n";
    return calibrate(checkpoint, stream, max_tokens);
}

// Loads or converts the chosen model and hands it to run(model, report) as a Transformer of the
// right layer type; report is null for float models and model files.
template <class Run>
void with_model(const ModelChoice& choice, const Options& options, Run&& run) {
    using Kind = ModelChoice::Kind;
    if (choice.kind == Kind::model_file) {
        with_instantiation(choice.kernels, choice.group, [&]<std::size_t K, std::size_t G>() {
            std::cerr << "loading " << choice.path.string() << " (converted, K=" << K << ", G=" << G << ")\n";
            run(load_model<K, G>(choice.path), nullptr);
        });
        return;
    }
    std::cerr << "loading " << choice.path.string() << "\n";
    const Checkpoint checkpoint = load_checkpoint(choice.path);
    if (choice.kind == Kind::float_model) {
        run(Transformer<DenseLinear>::from_checkpoint(
                checkpoint, [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); }),
            nullptr);
        return;
    }
    const auto calibration = calibrate_if_needed(choice, options, checkpoint);
    ConversionOptions conversion = choice.conversion;
    conversion.calibration = calibration ? &*calibration : nullptr;
    const auto finish = [&](const auto& converted) {
        print_totals(converted.second, std::cerr);
        run(converted.first, &converted.second);
    };
    switch (choice.kind) {
        case Kind::rtn:
            finish(convert_round_to_nearest(checkpoint, std::size_t(choice.bits), choice.group, conversion));
            return;
        case Kind::budget:
            with_instantiation(1, choice.group, [&]<std::size_t, std::size_t G>() {
                finish(convert_to_budget<G>(checkpoint, choice.bits, conversion));
            });
            return;
        case Kind::kernels:
            if (choice.row_column) {
                with_instantiation(choice.kernels, default_group, [&]<std::size_t K, std::size_t>() {
                    finish(convert_row_column<K>(checkpoint, conversion));
                });
            } else {
                with_instantiation(choice.kernels, choice.group, [&]<std::size_t K, std::size_t G>() {
                    finish(convert<K, G>(checkpoint, conversion));
                });
            }
            return;
        default:
            throw std::logic_error("with_model: unhandled model kind");
    }
}

// Option values are checked before any file is read: a usage error is reported as one (exit 2)
// whether or not the model exists.
int run_perplexity(const Options& options) {
    const std::size_t threads = options.count("threads").value_or(std::max(1u, std::thread::hardware_concurrency()));
    // Each worker holds its own KV cache; far more workers than cores only costs memory.
    if (threads == 0 || threads > max_threads) {
        throw UsageError("--threads takes 1.." + std::to_string(max_threads) + ", found " + std::to_string(threads));
    }
    const ModelChoice choice = choose_model(options);
    const fs::path text_path = options.path("text", "tinystories-valid.txt");
    const std::string text = read_text_file(text_path);
    with_model(choice, options, [&](const auto& model, const ConversionReport*) {
        const Tokenizer tokenizer = load_matching_tokenizer(options.path("tokenizer", "tok512.bin"), model.config());
        const std::vector<int> stream = tokenizer.encode(text, false, false);
        std::cerr << text_path.string() << ": " << stream.size() << " tokens, " << threads << " thread(s)\n";
        const auto started = std::chrono::steady_clock::now();
        // A terminal gets one updating line; a log gets a line per tenth of the chunks.
        const bool terminal = isatty(fileno(stderr)) != 0;
        const PerplexityResult result = perplexity(model, stream, threads, [&](std::size_t done, std::size_t all) {
            if (terminal) {
                std::cerr << "\rchunk " << done << "/" << all << (done == all ? "\n" : "") << std::flush;
            } else if (done * 10 / all != (done - 1) * 10 / all) {
                std::cerr << "chunk " << done << "/" << all << "\n";
            }
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::cerr << double(result.tokens) / seconds << " tokens/s scored\n";
        std::printf("perplexity: %.4f tokens: %zu\n", result.perplexity(), result.tokens);
    });
    return 0;
}

int run_generate(const Options& options) {
    const std::string prompt = options.text("prompt").value_or("Once upon a time");
    const std::size_t steps = options.count("steps").value_or(256);
    if (steps == 0) throw UsageError("--steps must be at least 1");
    const float temperature = options.real("temperature").value_or(0.0f);
    if (temperature < 0.0f) throw UsageError("--temperature must be >= 0");
    Sampler sampler(temperature, options.count("seed").value_or(42));
    const ModelChoice choice = choose_model(options);
    with_model(choice, options, [&](const auto& model, const ConversionReport*) {
        const Tokenizer tokenizer = load_matching_tokenizer(options.path("tokenizer", "tok512.bin"), model.config());
        const GenerationResult result = generate(model, tokenizer, prompt, steps, sampler,
                                                 [](std::string_view piece) { std::cout << piece << std::flush; });
        std::cout << "\n";
        std::cerr << result.prompt_tokens << " prompt tokens in " << result.prefill_seconds << " s, "
                  << result.generated() << " generated in " << result.decode_seconds << " s\n"
                  << "tokens/s: " << result.tokens_per_second() << "\n";
    });
    return 0;
}

// Set by SIGINT/SIGTERM during fine-tuning; the loop saves and stops after the current step.
volatile std::sig_atomic_t stop_requested = 0;
extern "C" void request_stop(int) { stop_requested = 1; }

// The options that define a fine-tuning run (stored in its checkpoint), from the command line.
FineTuneOptions parse_fine_tune_options(const Options& options) {
    FineTuneOptions o;
    const std::string policy = options.text("policy").value_or("stochastic");
    if (policy != "stochastic" && policy != "bold") {
        throw UsageError("--policy takes stochastic or bold, found '" + policy + "'");
    }
    o.policy = policy == "bold" ? FlipPolicyKind::bold : FlipPolicyKind::stochastic;
    const std::string trained = options.text("train-kernels").value_or("last");
    if (trained != "last" && trained != "all") {
        throw UsageError("--train-kernels takes last or all, found '" + trained + "'");
    }
    o.train_all_kernels = trained == "all";
    o.batch = options.count("batch").value_or(o.batch);
    o.length = options.count("seq").value_or(o.length);
    o.seed = options.count("seed").value_or(o.seed);
    if (const auto rate = options.real("flip-rate")) o.flip_rate = *rate;
    o.scale_learning_rate = options.real("lr").value_or(o.scale_learning_rate);
    o.float_learning_rate = options.real("float-lr").value_or(0.0f);
    o.train_float = o.float_learning_rate > 0;
    o.loss.kl_weight = options.real("kl").value_or(o.loss.kl_weight);
    o.loss.hidden_weight = options.real("hidden").value_or(o.loss.hidden_weight);
    o.loss.cross_entropy_weight = options.real("ce").value_or(o.loss.cross_entropy_weight);
    o.loss.temperature = options.real("temperature").value_or(o.loss.temperature);
    return o;
}

// --hidden-blocks as block numbers (empty: all), checked against the model once it is read.
std::vector<std::size_t> parse_hidden_blocks(const Options& options) {
    const std::string text = options.text("hidden-blocks").value_or("all");
    std::vector<std::size_t> blocks;
    if (text == "all") return blocks;
    std::istringstream list(text);
    for (std::string item; std::getline(list, item, ',');) {
        std::size_t block = 0;
        const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), block);
        if (item.empty() || error != std::errc() || end != item.data() + item.size()) {
            throw UsageError("--hidden-blocks takes all or block numbers separated by commas, found '" + text + "'");
        }
        blocks.push_back(block);
    }
    return blocks;
}

std::vector<bool> hidden_block_mask(std::span<const std::size_t> blocks, std::size_t layers) {
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

// The CSV log: a header, a row per step, the validation perplexity on the rows where it was measured.
class TrainingLog {
public:
    // A resumed run keeps the rows up to its step and drops any written after that checkpoint.
    TrainingLog(fs::path path, std::size_t kernels, std::size_t resumed_step) : path_(std::move(path)) {
        std::string header = "step,tokens,loss,kl,hidden_mse,cross_entropy";
        for (std::size_t k = 0; k < kernels; ++k) header += ",flip_rate_k" + std::to_string(k);
        header += ",tokens_per_second,valid_perplexity";
        std::string kept = header + "\n";
        if (resumed_step > 0 && fs::exists(path_)) {
            std::istringstream old(read_text_file(path_));
            std::string line;
            std::getline(old, line);
            if (line != header) throw std::runtime_error(path_.string() + ": a log with other columns; give --log");
            while (std::getline(old, line)) {
                std::size_t step = 0;
                std::from_chars(line.data(), line.data() + line.size(), step);
                if (step <= resumed_step) kept += line + "\n";
            }
        }
        write_file_atomically(path_, [&](std::ostream& out) { out << kept; });
        out_.open(path_, std::ios::app);
        if (!out_) throw std::runtime_error(path_.string() + ": cannot open for appending");
    }
    void row(std::size_t step, std::size_t tokens, const FineTuneStep* s, std::size_t kernels, double tokens_per_second,
             std::optional<double> perplexity) {
        char buffer[64];
        const auto number = [&](double v) {
            std::snprintf(buffer, sizeof buffer, "%.6g", v);
            return std::string(buffer);
        };
        std::string line = std::to_string(step) + "," + std::to_string(tokens);
        if (s != nullptr) {
            line += "," + number(s->loss.total) + "," + number(s->loss.kl) + "," + number(s->loss.hidden_mse) + "," +
                    number(s->loss.cross_entropy);
            for (std::size_t k = 0; k < kernels; ++k) {
                const std::size_t bits = s->flips.kernel_bits[k];
                line += "," + number(bits == 0 ? 0.0 : double(s->flips.kernel_flips[k]) / double(bits));
            }
            line += "," + number(tokens_per_second);
        } else {
            line += ",,,," + std::string(kernels + 1, ',');
        }
        line += "," + (perplexity ? number(*perplexity) : std::string());
        out_ << line << "\n" << std::flush;
        if (!out_) throw std::runtime_error(path_.string() + ": write failed");
    }

private:
    fs::path path_;
    std::ofstream out_;
};

std::string clock_text(double seconds) {
    const auto s = static_cast<long>(std::max(0.0, seconds));
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%ld:%02ld", s / 60, s % 60);
    return buffer;
}

// One line per step on a terminal (rewritten in place), else about twenty lines per run.
void show_progress(std::size_t done, std::size_t total, const FineTuneStep& s, double tokens_per_second,
                   double seconds_left) {
    const bool terminal = isatty(fileno(stderr)) != 0;
    if (!terminal && done != total && done * 20 / total == (done - 1) * 20 / total) return;
    constexpr std::size_t width = 24;
    const std::size_t filled = width * done / total;
    char line[256];
    std::snprintf(line, sizeof line, "[%s%s] %zu/%zu loss %.4f (kl %.4f mse %.4f) flips %.2e %.0f tok/s ETA %s",
                  std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), done, total,
                  s.loss.total, s.loss.kl, s.loss.hidden_mse, s.flips.flip_rate(), tokens_per_second,
                  clock_text(seconds_left).c_str());
    std::cerr << (terminal ? "\r" : "") << line << (terminal && done != total ? "" : "\n") << std::flush;
}

template <std::size_t K, std::size_t G>
int fine_tune_loop(FineTuner<K, G>& tuner, const Options& options, const fs::path& out, std::size_t steps,
                   std::size_t threads, std::span<const int> valid) {
    const std::size_t eval_every = options.count("eval-every").value_or(200);
    const std::size_t save_every = options.count("save-every").value_or(50);
    const fs::path log_path = options.text("log").value_or(out.string() + ".csv");
    TrainingLog log(log_path, K, tuner.steps_done());
    const auto validate = [&] { return perplexity(tuner.student(), valid, threads).perplexity(); };
    const std::size_t tokens_per_step = tuner.options().batch * tuner.options().length;
    if (tuner.steps_done() == 0) {
        const double start = validate();
        std::cerr << "validation perplexity before fine-tuning: " << start << "\n";
        log.row(0, 0, nullptr, K, 0.0, start);
    }
    const auto state = tuner.state_bytes_per_weight();
    std::fprintf(stderr,
                 "training state per weight: flip policy %.3f B, scale AdamW %.3f B (bits %.3f B, scales %.3f B); "
                 "float-parameter AdamW %zu B in all\n",
                 state.flip, state.scales, double(K) / 8.0, double(K) * sizeof(float) / double(G),
                 state.float_optimizer_bytes);
    stop_requested = 0;
    const auto previous_int = std::signal(SIGINT, request_stop);
    const auto previous_term = std::signal(SIGTERM, request_stop);
    const auto restore = [&] {
        std::signal(SIGINT, previous_int);
        std::signal(SIGTERM, previous_term);
    };
    const auto started = std::chrono::steady_clock::now();
    const std::size_t first = tuner.steps_done();
    try {
        while (tuner.steps_done() < steps) {
            const auto step_started = std::chrono::steady_clock::now();
            const FineTuneStep s = tuner.step(threads);
            const auto now = std::chrono::steady_clock::now();
            const double step_seconds = std::chrono::duration<double>(now - step_started).count();
            const double elapsed = std::chrono::duration<double>(now - started).count();
            const std::size_t done = tuner.steps_done();
            const double per_step = elapsed / double(done - first);
            const bool last = done == steps;
            std::optional<double> ppl;
            if (last || (eval_every != 0 && done % eval_every == 0)) ppl = validate();
            log.row(done, done * tokens_per_step, &s, K, double(tokens_per_step) / step_seconds, ppl);
            show_progress(done, steps, s, double(tokens_per_step) / step_seconds, per_step * double(steps - done));
            if (ppl && !last) std::cerr << (isatty(fileno(stderr)) ? "\n" : "") << "step " << done
                                        << ": validation perplexity " << *ppl << "\n";
            if (last || stop_requested || (save_every != 0 && done % save_every == 0)) tuner.save(out);
            if (stop_requested && !last) {
                std::string command = "multibool-llama finetune --resume " + out.string();
                for (const char* file : {"model", "tokenizer", "train", "valid", "log"}) {
                    if (const auto value = options.text(file)) command += " --" + std::string(file) + " " + *value;
                }
                std::cerr << "\nstopped at step " << done << "; saved " << out.string() << "; continue with: " << command
                          << "\n";
                restore();
                return 130;
            }
        }
    } catch (...) {
        restore();
        throw;
    }
    restore();
    const PerplexityResult result = perplexity(tuner.student(), valid, threads);
    std::cerr << "saved " << out.string() << " and " << log_path.string() << "\n";
    if (const auto exported = options.text("export")) {
        const auto deployed = tuner.deployable();
        save_model(deployed, fs::path(*exported));
        std::cerr << "exported " << *exported << " (fp16 scales); its validation perplexity with the default backend: "
                  << perplexity(deployed, valid, threads).perplexity() << "\n";
    }
    std::printf("perplexity: %.4f tokens: %zu\n", result.perplexity(), result.tokens);
    return 0;
}

int run_finetune(const Options& options) {
    const auto resume = options.text("resume");
    const auto out_option = options.text("out");
    if (!resume && !out_option) throw UsageError("give --out CKPT (or --resume CKPT)");
    const fs::path out = out_option.value_or(resume.value_or(""));
    const std::size_t threads = options.count("threads").value_or(std::max(1u, std::thread::hardware_concurrency()));
    if (threads == 0 || threads > max_threads) {
        throw UsageError("--threads takes 1.." + std::to_string(max_threads) + ", found " + std::to_string(threads));
    }
    static const std::array<const char*, 16> run_options = {
        "kernels", "group", "init",  "policy", "train-kernels", "batch",       "seq",  "lr",
        "flip-rate", "float-lr", "kl", "hidden", "hidden-blocks", "ce", "temperature", "seed"};
    if (resume) {
        for (const char* name : run_options) {
            if (options.text(name)) {
                throw UsageError("--" + std::string(name) + " is fixed by the checkpoint being resumed; drop it");
            }
        }
    }
    const std::string init = options.text("init").value_or("act-aware");
    const auto initializer = parse_initializer(init);
    if (!initializer) throw UsageError("--init takes greedy, alternating or act-aware, found '" + init + "'");
    std::size_t kernels = options.count("kernels").value_or(2);
    std::size_t group = options.count("group").value_or(default_group);
    if (resume) {
        const FineTuneHeader header = read_fine_tune_header(*resume);
        kernels = header.kernels;
        group = header.group_size;
    }
    require_supported(kernels, group);

    FineTuneOptions fine_tune = parse_fine_tune_options(options);
    const std::vector<std::size_t> hidden_blocks = parse_hidden_blocks(options);
    const fs::path model_path = options.path("model", "stories260K.bin");
    std::cerr << "loading " << model_path.string() << "\n";
    const Checkpoint teacher = load_checkpoint(model_path);
    fine_tune.loss.hidden_blocks = hidden_block_mask(hidden_blocks, teacher.config().n_layers);
    try {
        if (!resume) check_fine_tune_options(fine_tune, teacher.config());
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }
    const Tokenizer tokenizer = load_matching_tokenizer(options.path("tokenizer", "tok512.bin"), teacher.config());
    const fs::path train_path = options.path("train", "tinystories-train.txt");
    const fs::path valid_path = options.path("valid", "tinystories-valid.txt");
    const std::vector<int> train = tokenizer.encode(read_text_file(train_path), false, false);
    const std::vector<int> valid = tokenizer.encode(read_text_file(valid_path), false, false);
    std::cerr << train_path.string() << ": " << train.size() << " tokens; " << valid_path.string() << ": "
              << valid.size() << " tokens; " << threads << " thread(s)\n";
    int status = 0;
    with_instantiation(kernels, group, [&]<std::size_t K, std::size_t G>() {
        std::optional<FineTuner<K, G>> tuner;
        if (resume) {
            tuner.emplace(FineTuner<K, G>::load(*resume, teacher, train));
            std::cerr << "resuming " << *resume << " at step " << tuner->steps_done() << " (K=" << K
                      << ", G=" << G << ", " << flip_policy_name(tuner->options().policy) << ")\n";
        } else {
            std::optional<CalibrationStatistics> calibration;
            ConversionOptions conversion;
            conversion.initializer = *initializer;
            if (*initializer == Initializer::activation_aware) {
                calibration = calibrate(teacher, train, 32768);
                conversion.calibration = &*calibration;
            }
            auto converted = convert<K, G, float, HighwayBackend>(teacher, conversion);
            print_totals(converted.second, std::cerr);
            tuner.emplace(teacher, std::move(converted.first), train, fine_tune);
        }
        const std::size_t steps = options.count("steps").value_or(resume ? tuner->planned_steps() : 1200);
        tuner->set_planned_steps(steps);
        if (tuner->steps_done() >= steps) {
            throw UsageError("the run is at step " + std::to_string(tuner->steps_done()) + "; give --steps above it");
        }
        status = fine_tune_loop(*tuner, options, out, steps, threads, valid);
    });
    return status;
}

int run_quantize(const Options& options) {
    const ModelChoice choice = choose_model(options);
    if (choice.kind == ModelChoice::Kind::model_file) {
        throw UsageError(choice.path.string() + " is already a converted model file");
    }
    if (choice.kind == ModelChoice::Kind::float_model) throw UsageError("give --kernels, --bits or --rtn");
    const auto out = options.text("out");
    if (out && (choice.kind != ModelChoice::Kind::kernels || choice.row_column)) {
        throw UsageError("--out writes fixed-K group-scale models (--kernels without --scales rowcol)");
    }
    with_model(choice, options, [&](const auto& model, const ConversionReport* report) {
        print_table(*report);
        if (!out) return;
        if constexpr (requires { save_model(model, fs::path(*out)); }) {
            save_model(model, fs::path(*out));
            std::printf("wrote %s\n", out->c_str());
        }
    });
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::span<char*> args(argv, std::size_t(argc));
    if (args.size() < 2 || std::string_view(args[1]) == "--help" || std::string_view(args[1]) == "-h") {
        (args.size() < 2 ? std::cerr : std::cout) << tool_usage();
        return args.size() < 2 ? 2 : 0;
    }
    const Command* command = nullptr;
    try {
        command = &command_spec(args[1]);
        const Options options(*command, args.subspan(2));
        if (options.help()) {
            std::cout << usage(*command);
            return 0;
        }
        if (command->name == "perplexity") return run_perplexity(options);
        if (command->name == "generate") return run_generate(options);
        if (command->name == "finetune") return run_finetune(options);
        return run_quantize(options);
    } catch (const UsageError& e) {
        std::cerr << "multibool-llama: " << e.what() << "\n"
                  << "run 'multibool-llama " << (command ? command->name + " " : std::string())
                  << "--help' for usage\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "multibool-llama: error: " << e.what() << "\n";
        return 1;
    }
}
