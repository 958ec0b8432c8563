#pragma once
// What several commands read or print about a model: text files, the float checkpoint (llama2.c
// or GGUF), the tokenizer that must match the model, the initializer's name, a conversion's totals.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>

#include "llama/checkpoint.hpp"
#include "llama/cli/options.hpp"
#include "llama/cli/supported_shapes.hpp"
#include "llama/conversion.hpp"
#include "llama/gguf_model.hpp"
#include "llama/text_tokenizer.hpp"
#include "multibool/core/gguf_file.hpp"

namespace multibool::llama::cli {

// How many tokens of the calibration text act-aware conversion reads.
inline constexpr std::size_t default_calibration_tokens = 32768;

inline std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A float model from a llama2.c checkpoint or a GGUF file (told apart by GGUF's magic).
inline Checkpoint load_float_checkpoint(const std::filesystem::path& path) {
    return gguf::is_gguf_file(path) ? load_gguf_checkpoint(path) : load_checkpoint(path);
}

// The hyperparameters of a llama2.c checkpoint or GGUF file, without reading its tensors.
inline Config load_float_config(const std::filesystem::path& path) {
    if (gguf::is_gguf_file(path)) return read_gguf_config(gguf::File(path));
    std::ifstream in = open_for_reading(path);
    BinaryReader reader(in, path.string());
    return llama::detail::read_config(reader);
}

// --tokenizer when given; else a GGUF model's own vocabulary; else the shipped llama2.c file.
inline std::filesystem::path tokenizer_path(const ParsedOptions& options) {
    if (options.given("tokenizer")) return options.path("tokenizer");
    if (const auto model = options.text("model"); model && gguf::is_gguf_file(*model)) return *model;
    return asset("tok512.bin");
}

inline TextTokenizer load_matching_tokenizer(const ParsedOptions& options, const Config& config) {
    const std::filesystem::path path = tokenizer_path(options);
    TextTokenizer tokenizer = load_text_tokenizer(path);
    if (tokenizer.vocab_size() != config.vocab_size) {
        throw std::runtime_error(path.string() + ": the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                                 " pieces, the model's vocab_size is " + std::to_string(config.vocab_size));
    }
    return tokenizer;
}

inline OptionSpec tokenizer_option(unsigned flags = no_flags) {
    return {"tokenizer", "T",
            "llama2.c tokenizer file or GGUF file (default: a GGUF model's own vocabulary, else " +
                asset("tok512.bin").string() + ")",
            std::nullopt, flags};
}

inline OptionSpec group_option(unsigned flags = no_flags) {
    return {"group", "G", "columns sharing one scale: " + alternatives_text(supported_groups) + " (default {})",
            number_text(default_group), flags};
}

// --init, by the initializers' names.
inline Initializer initializer_option(const ParsedOptions& options) {
    const std::string name = *options.text("init");
    for (Initializer i : {Initializer::greedy, Initializer::alternating, Initializer::activation_aware}) {
        if (name == initializer_name(i)) return i;
    }
    throw UsageError("--init takes greedy, alternating or act-aware, found '" + name + "'");
}

// The relative output error needs calibration statistics: "-" when the conversion had none.
inline std::string output_error_text(double error) {
    if (std::isnan(error)) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", error);
    return text;
}

inline void print_totals(const ConversionReport& report, std::ostream& out) {
    const ErrorTally total = report.total();
    char line[512];
    std::snprintf(line, sizeof line,
                  "%s: %zu projections, %zu weights in %zu bytes (float32: %zu), %.4f bits/weight, relative error "
                  "%.4f, relative output error %s\n",
                  report.method.c_str(), report.projections.size(), total.weights, total.storage_bytes,
                  total.weights * sizeof(float), total.bits_per_weight(), total.relative_error(),
                  output_error_text(total.relative_output_error()).c_str());
    out << line;
}

}  // namespace multibool::llama::cli
