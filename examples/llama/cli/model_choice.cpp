// Choosing, loading and converting the model of a perplexity, generate or quantize run: every
// conversion and model-file reader instantiation of the tool lives in this translation unit.
#include "llama/cli/model_choice.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "llama/calibration.hpp"
#include "llama/checkpoint.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/finetune.hpp"
#include "llama/finetune_checkpoint.hpp"
#include "llama/gguf_model.hpp"
#include "llama/model_file.hpp"

namespace multibool::llama::cli {

namespace fs = std::filesystem;

namespace {

std::vector<int> calibration_stream(const ParsedOptions& options, const TextTokenizer& tokenizer) {
    return tokenizer.encode(read_text_file(options.path("calibration")), false, false);
}

// A file that already holds kernels (K, G) takes no conversion options but a matching K or G.
void check_no_conversion(const fs::path& path, std::size_t K, std::size_t G, const ParsedOptions& options) {
    const auto kernels = options.count("kernels");
    const bool conflicting = (kernels && *kernels != K) || (options.given("group") && *options.count("group") != G);
    if (conflicting || options.given("bits") || options.given("rtn") || options.given("scales") ||
        options.given("init")) {
        throw UsageError(path.string() + " holds a model converted with K=" + std::to_string(K) +
                         ", G=" + std::to_string(G) +
                         "; conversion options (--kernels, --group, --bits, --rtn, --scales, --init) do not apply");
    }
}

// A converted file's header, checked against what this tool reads and what the options ask for.
void check_model_file(const ModelChoice& choice, const ModelFileHeader& header, const ParsedOptions& options) {
    const fs::path& path = choice.path;
    if (!is_supported(header.kernels, header.group_size)) {
        throw std::runtime_error(path.string() + ": converted with K=" + std::to_string(header.kernels) +
                                 ", G=" + std::to_string(header.group_size) + ", which this tool does not support (" +
                                 supported_values() + ")");
    }
    check_no_conversion(path, header.kernels, header.group_size, options);
    constexpr std::size_t word_bits = std::numeric_limits<std::uint64_t>::digits;
    if (header.word_bits != word_bits) {
        throw std::runtime_error(path.string() + ": written with " + std::to_string(header.word_bits) +
                                 "-bit plane words; this tool reads " + std::to_string(word_bits) + "-bit ones");
    }
}

// Calibration statistics for act-aware conversion (and for the output-space error column).
std::optional<CalibrationStatistics> calibrate_if_needed(const ModelChoice& choice, const ParsedOptions& options,
                                                         const Checkpoint& checkpoint) {
    const bool needed =
        choice.kind == ModelChoice::Kind::gptq ||
        (choice.kind != ModelChoice::Kind::float_model && choice.kind != ModelChoice::Kind::model_file &&
         (choice.conversion.initializer == Initializer::activation_aware || options.given("calibration")));
    if (!needed) return std::nullopt;
    const std::size_t max_tokens = *options.count("calibration-tokens");
    const TextTokenizer tokenizer = load_matching_tokenizer(options, checkpoint.config());
    const std::vector<int> stream = calibration_stream(options, tokenizer);
    std::cerr << "calibrating on " << std::min(stream.size(), max_tokens) << " tokens of "
              << options.path("calibration").string() << "\n";
    return calibrate(checkpoint, stream, max_tokens, tokenizer.required_bos());
}

// The KL sensitivities a KL-weighted bit budget needs.
std::optional<KlSensitivity> sensitivity_if_needed(const ModelChoice& choice, const ParsedOptions& options,
                                                   const Checkpoint& checkpoint) {
    if (choice.kind != ModelChoice::Kind::budget || !choice.kl_allocation) return std::nullopt;
    const TextTokenizer tokenizer = load_matching_tokenizer(options, checkpoint.config());
    const std::size_t tokens = *options.count("sensitivity-tokens");
    std::cerr << "measuring each projection's KL sensitivity on " << tokens << " tokens\n";
    return KlSensitivity(checkpoint, calibration_stream(options, tokenizer), tokens, KlSensitivity::default_chunk,
                         tokenizer.required_bos());
}

template <class Model>
LoadedModel converted(std::pair<Model, ConversionReport> conversion) {
    print_totals(conversion.second, std::cerr);
    return {std::move(conversion.first), std::move(conversion.second)};
}

}  // namespace

ModelChoice choose_model(const ParsedOptions& options) {
    ModelChoice choice = requested_model(options);
    if (!fs::exists(choice.path)) throw std::runtime_error(choice.path.string() + ": no such file");
    if (gguf::is_gguf_file(choice.path)) {
        const gguf::File file(choice.path);
        if (gguf_projections(file, read_gguf_config(file)) == GgufProjections::q1_0) {
            check_no_conversion(choice.path, 1, q1_0_block_columns, options);
            choice.kind = ModelChoice::Kind::gguf_q1_0;
            choice.kernels = 1;
            choice.group = q1_0_block_columns;
        }
        return choice;
    }
    if (is_fine_tune_checkpoint(choice.path)) {
        const FineTuneHeader header = read_fine_tune_header(choice.path);
        if (!is_supported(header.kernels, header.group_size)) {
            throw std::runtime_error(choice.path.string() + ": fine-tuned with K=" + std::to_string(header.kernels) +
                                     ", G=" + std::to_string(header.group_size) +
                                     ", which this tool does not support (" + supported_values() + ")");
        }
        check_no_conversion(choice.path, header.kernels, header.group_size, options);
        choice.kind = ModelChoice::Kind::fine_tune_checkpoint;
        choice.kernels = header.kernels;
        choice.group = header.group_size;
        return choice;
    }
    if (!is_model_file(choice.path)) return choice;
    const ModelFileHeader header = read_model_header(choice.path);
    check_model_file(choice, header, options);
    choice.kind = ModelChoice::Kind::model_file;
    choice.kernels = header.kernels;
    choice.group = header.group_size;
    return choice;
}

LoadedModel load_chosen_model(const ModelChoice& choice, const ParsedOptions& options) {
    using Kind = ModelChoice::Kind;
    std::optional<LoadedModel> loaded;
    if (choice.kind == Kind::model_file) {
        with_instantiation(choice.kernels, choice.group, [&]<std::size_t K, std::size_t G>() {
            std::cerr << "loading " << choice.path.string() << " (converted, K=" << K << ", G=" << G << ")\n";
            loaded.emplace(LoadedModel{load_model<K, G>(choice.path), std::nullopt});
        });
        return std::move(*loaded);
    }
    if (choice.kind == Kind::fine_tune_checkpoint) {
        with_instantiation(choice.kernels, choice.group, [&]<std::size_t K, std::size_t G>() {
            static_assert(std::is_same_v<FineTunedModel<K, G>, typename FineTuner<K, G>::Student>);
            auto run = FineTuner<K, G>::read_run(choice.path);
            std::cerr << "loading " << choice.path.string() << " (fine-tuning checkpoint, K=" << K << ", G=" << G
                      << ", step " << run.step << " of " << run.planned_steps << ")\n";
            loaded.emplace(LoadedModel{std::move(run.student), std::nullopt});
        });
        return std::move(*loaded);
    }
    if (choice.kind == Kind::gguf_q1_0) {
        std::cerr << "loading " << choice.path.string() << " (GGUF, Q1_0 kernels: K=1, G=128)\n";
        return {read_gguf_q1_0_model(gguf::File(choice.path)), std::nullopt};
    }
    std::cerr << "loading " << choice.path.string() << "\n";
    const Checkpoint checkpoint = load_float_checkpoint(choice.path);
    if (choice.kind == Kind::float_model) {
        return {Transformer<DenseLinear>::from_checkpoint(
                    checkpoint, [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); }),
                std::nullopt};
    }
    if (choice.kind == Kind::budget) {
        try {
            with_group(choice.group, [&]<std::size_t G>() { check_budget<G>(checkpoint.config(), choice.bits); });
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("--bits: ") + e.what());
        }
    }
    const auto calibration = calibrate_if_needed(choice, options, checkpoint);
    const auto sensitivity = sensitivity_if_needed(choice, options, checkpoint);
    ConversionOptions conversion = choice.conversion;
    if (calibration) conversion.calibration = std::cref(*calibration);
    if (sensitivity) conversion.sensitivity = std::cref(*sensitivity);
    switch (choice.kind) {
        case Kind::rtn:
            return converted(convert_round_to_nearest(checkpoint, std::size_t(choice.bits), choice.group, conversion));
        case Kind::gptq:
            return converted(convert_gptq(checkpoint, std::size_t(choice.bits), choice.group, conversion));
        case Kind::budget:
            with_group(choice.group, [&]<std::size_t G>() {
                loaded.emplace(converted(convert_to_budget<G>(checkpoint, choice.bits, conversion)));
            });
            return std::move(*loaded);
        case Kind::kernels:
            if (choice.row_column) {
                with_kernels(choice.kernels, [&]<std::size_t K>() {
                    loaded.emplace(converted(convert_row_column<K>(checkpoint, conversion)));
                });
            } else {
                with_instantiation(choice.kernels, choice.group, [&]<std::size_t K, std::size_t G>() {
                    loaded.emplace(converted(convert<K, G>(checkpoint, conversion)));
                });
            }
            return std::move(*loaded);
        default:
            throw std::logic_error("load_chosen_model: unhandled model kind");
    }
}

}  // namespace multibool::llama::cli
