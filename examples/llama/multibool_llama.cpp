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

#include <unistd.h>

#include "common/assets_path.hpp"
#include "llama/checkpoint.hpp"
#include "llama/conversion.hpp"
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

const std::vector<Command>& commands() {
    const std::string model_help =
        "llama2.c checkpoint or converted multibool model file (default: " + asset("stories260K.bin").string() + ")";
    const std::string tokenizer_help = "llama2.c tokenizer file (default: " + asset("tok512.bin").string() + ")";
    const std::string kernels_help =
        "Boolean kernels per weight, 1..4; 0 or absent: float (a converted model file sets its own)";
    const std::string group_help = "columns sharing one scale: 32, 64 or 128 (default 64)";
    static const std::vector<Command> list = {
        {"perplexity",
         "perplexity of a text under the protocol of the shared assets",
         "Scores a text with the protocol of the shared assets README (chunks of 256 tokens, BOS first, an\n"
         "empty cache per chunk). Progress goes to stderr; stdout ends with one line\n"
         "'perplexity: <value> tokens: <count>'.",
         {{"model", "M", model_help},
          {"tokenizer", "T", tokenizer_help},
          {"text", "F", "text file to score (default: " + asset("tinystories-valid.txt").string() + ")"},
          {"kernels", "K", kernels_help},
          {"group", "G", group_help},
          {"threads", "N", "worker threads over chunks (default: all hardware threads)"}}},
        {"generate",
         "continue a prompt, greedy or sampled",
         "Continues a prompt with llama2.c's run loop: greedy at temperature 0 (as llama2.c), otherwise\n"
         "sampled from softmax(logits / temperature). The text goes to stdout; stderr ends with\n"
         "'tokens/s: <value>' (decoding, prefill excluded).",
         {{"model", "M", model_help},
          {"tokenizer", "T", tokenizer_help},
          {"prompt", "P", "text to continue (default: \"Once upon a time\")"},
          {"steps", "N", "forward passes, prompt included, at most the model's seq_len (default 256)"},
          {"temperature", "X", "0 for greedy (default), higher for more varied text"},
          {"seed", "S", "seed of the sampler when temperature > 0 (default 42)"},
          {"kernels", "K", kernels_help},
          {"group", "G", group_help}}},
        {"quantize",
         "convert a checkpoint to Boolean kernels and write a model file",
         "Converts a llama2.c checkpoint into a multibool model file (greedy residual initializer) and\n"
         "prints each projection's shape, K, G, bits per weight (scales and padding counted) and\n"
         "relative Frobenius error, then the totals.",
         {{"model", "M", "llama2.c checkpoint (default: " + asset("stories260K.bin").string() + ")"},
          {"kernels", "K", "Boolean kernels per weight, 1..4 (required)"},
          {"group", "G", group_help},
          {"out", "F", "the model file to write (required)"}}},
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

void print_conversion_totals(const ConversionReport& report, std::ostream& out) {
    const ErrorTally total = report.total();
    char line[256];
    std::snprintf(line, sizeof line,
                  "converted %zu projections (%s, K=%zu, G=%zu): %zu weights, %.4f bits/weight, relative error %.4f\n",
                  report.projections.size(), report.initializer.c_str(), report.kernels, report.group_size,
                  total.weights, total.bits_per_weight(), total.relative_error());
    out << line;
}

// Which model a run uses: float (kernels 0) or K Boolean kernels at group G, and whether it
// comes from a converted model file or is converted now from a checkpoint.
struct ModelChoice {
    fs::path path;
    bool model_file = false;
    std::size_t kernels = 0;
    std::size_t group = default_group;
};

ModelChoice choose_model(const Options& options) {
    ModelChoice choice;
    choice.path = options.path("model", "stories260K.bin");
    const auto kernels = options.count("kernels");
    const auto group = options.count("group");
    if (kernels.value_or(0) == 0 && group) {
        throw UsageError("--group needs --kernels 1..4 (a float model has no groups)");
    }
    if (kernels.value_or(0) != 0) require_supported(*kernels, group.value_or(default_group));
    if (!fs::exists(choice.path)) throw std::runtime_error(choice.path.string() + ": no such file");
    if (is_model_file(choice.path)) {
        const ModelFileHeader header = read_model_header(choice.path);
        choice.model_file = true;
        choice.kernels = header.kernels;
        choice.group = header.group_size;
        if (!is_supported(header.kernels, header.group_size)) {
            throw std::runtime_error(choice.path.string() + ": converted with K=" + std::to_string(header.kernels) +
                                     ", G=" + std::to_string(header.group_size) +
                                     ", which this tool does not support (" + supported_values() + ")");
        }
        if ((kernels && *kernels != header.kernels) || (group && *group != header.group_size)) {
            throw UsageError(
                choice.path.string() + " holds a model converted with K=" + std::to_string(header.kernels) +
                ", G=" + std::to_string(header.group_size) + "; drop --kernels/--group or pass those values");
        }
        if (header.word_bits != 64) {
            throw std::runtime_error(choice.path.string() + ": written with " + std::to_string(header.word_bits) +
                                     "-bit plane words; this tool reads 64-bit ones");
        }
        return choice;
    }
    choice.kernels = kernels.value_or(0);
    choice.group = group.value_or(default_group);
    return choice;
}

// Loads the chosen model and hands it to run(model) as a Transformer of the right layer type.
template <class Run>
void with_model(const ModelChoice& choice, Run&& run) {
    if (choice.kernels == 0) {
        std::cerr << "loading " << choice.path.string() << " (float)\n";
        const Checkpoint checkpoint = load_checkpoint(choice.path);
        run(Transformer<DenseLinear>::from_checkpoint(
            checkpoint, [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); }));
        return;
    }
    with_instantiation(choice.kernels, choice.group, [&]<std::size_t K, std::size_t G>() {
        if (choice.model_file) {
            std::cerr << "loading " << choice.path.string() << " (converted, K=" << K << ", G=" << G << ")\n";
            run(load_model<K, G>(choice.path));
            return;
        }
        std::cerr << "loading " << choice.path.string() << " and converting it (K=" << K << ", G=" << G << ")\n";
        auto [model, report] = convert<K, G>(load_checkpoint(choice.path));
        print_conversion_totals(report, std::cerr);
        run(model);
    });
}

int run_perplexity(const Options& options) {
    const ModelChoice choice = choose_model(options);
    const std::size_t threads = options.count("threads").value_or(std::max(1u, std::thread::hardware_concurrency()));
    // Each worker holds its own KV cache; far more workers than cores only costs memory.
    if (threads == 0 || threads > max_threads) {
        throw UsageError("--threads takes 1.." + std::to_string(max_threads) + ", found " + std::to_string(threads));
    }
    const fs::path text_path = options.path("text", "tinystories-valid.txt");
    const std::string text = read_text_file(text_path);
    with_model(choice, [&](const auto& model) {
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
    const ModelChoice choice = choose_model(options);
    const std::string prompt = options.text("prompt").value_or("Once upon a time");
    const std::size_t steps = options.count("steps").value_or(256);
    if (steps == 0) throw UsageError("--steps must be at least 1");
    const float temperature = options.real("temperature").value_or(0.0f);
    if (temperature < 0.0f) throw UsageError("--temperature must be >= 0");
    Sampler sampler(temperature, options.count("seed").value_or(42));
    with_model(choice, [&](const auto& model) {
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

int run_quantize(const Options& options) {
    const auto kernels = options.count("kernels");
    const auto out = options.text("out");
    if (!kernels || *kernels == 0) throw UsageError("--kernels 1..4 is required");
    if (!out) throw UsageError("--out is required");
    const std::size_t group = options.count("group").value_or(default_group);
    require_supported(*kernels, group);
    const fs::path model_path = options.path("model", "stories260K.bin");
    if (is_model_file(model_path)) throw UsageError(model_path.string() + " is already a converted model file");
    const Checkpoint checkpoint = load_checkpoint(model_path);
    with_instantiation(*kernels, group, [&]<std::size_t K, std::size_t G>() {
        auto [model, report] = convert<K, G>(checkpoint);
        std::printf("%-5s %-4s %11s %2s %4s %10s %10s\n", "layer", "name", "shape", "K", "G", "bits/w", "rel.error");
        for (const auto& p : report.projections) {
            const std::string shape = std::to_string(p.rows) + "x" + std::to_string(p.cols);
            std::printf("%-5zu %-4s %11s %2zu %4zu %10.4f %10.4f\n", p.layer, projection_name(p.projection),
                        shape.c_str(), K, G, p.tally.bits_per_weight(), p.tally.relative_error());
        }
        const ErrorTally total = report.total();
        std::printf(
            "total: %zu weights in %zu projections, %zu bytes (float32: %zu), %.4f bits/weight, "
            "relative error %.4f (initializer: %s)\n",
            total.weights, report.projections.size(), total.storage_bytes, total.weights * sizeof(float),
            total.bits_per_weight(), total.relative_error(), report.initializer.c_str());
        save_model(model, fs::path(*out));
        std::printf("wrote %s\n", out->c_str());
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
