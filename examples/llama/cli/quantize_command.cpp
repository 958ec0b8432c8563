// multibool-llama quantize: a checkpoint converted, its per-projection table, a model file (multibool's,
// or a GGUF file of Q1_0 kernels that llama.cpp loads).
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>

#include "llama/cli/command_lines.hpp"
#include "llama/cli/commands.hpp"
#include "llama/cli/model_choice.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/gguf_model.hpp"
#include "llama/model_file.hpp"
#include "multibool/core/gguf_file.hpp"

namespace multibool::llama::cli {

namespace {

void print_table(const ConversionReport& report) {
    std::printf("%-5s %-4s %11s %2s %10s %10s %10s\n", "layer", "name", "shape", "K", "bits/w", "rel.error",
                "rel.output");
    for (const auto& p : report.projections) {
        const std::string shape = std::to_string(p.rows) + "x" + std::to_string(p.cols);
        std::printf("%-5zu %-4s %11s %2zu %10.4f %10.4f %10s\n", p.layer, projection_name(p.projection), shape.c_str(),
                    p.kernels, p.tally.bits_per_weight(), p.tally.relative_error(),
                    output_error_text(p.tally.relative_output_error()).c_str());
    }
    std::fputs("total: ", stdout);
    std::ostringstream totals;
    print_totals(report, totals);
    std::fputs(totals.str().c_str(), stdout);
}

int run_quantize(const ParsedOptions& options) {
    const ModelChoice choice = choose_model(options);
    if (choice.kind == ModelChoice::Kind::model_file || choice.kind == ModelChoice::Kind::gguf_q1_0 ||
        choice.kind == ModelChoice::Kind::fine_tune_checkpoint) {
        throw UsageError(choice.path.string() +
                         " already holds Boolean kernels (a converted model file, Q1_0 GGUF or fine-tuning checkpoint; "
                         "finetune --resume it with --export for a model file)");
    }
    if (choice.kind == ModelChoice::Kind::float_model) throw UsageError("give --kernels, --bits, --rtn or --gptq");
    std::optional<std::filesystem::path> out;
    if (const auto text = options.text("out")) out = *text;
    if (out && (choice.kind != ModelChoice::Kind::kernels || choice.row_column)) {
        throw UsageError("--out writes fixed-K group-scale models (--kernels without --scales rowcol)");
    }
    const bool gguf_out = out && out->extension() == ".gguf";
    if (gguf_out && !gguf::is_gguf_file(choice.path)) {
        throw UsageError("--out " + out->string() + " copies the metadata and vocabulary of a GGUF --model; " +
                         choice.path.string() + " is not a GGUF file (write a .mbool file instead)");
    }
    const bool q1_0 = choice.kernels == 1 && choice.group == q1_0_block_columns;
    if (gguf_out && !q1_0) {
        out->replace_extension(".mbool");
        std::fprintf(stderr,
                     "note: GGUF cannot carry K=%zu, G=%zu (its one multi-Boolean type, Q1_0, is K=1, G=128): "
                     "writing the multibool model file %s instead\n",
                     choice.kernels, choice.group, out->c_str());
    }
    // What the file to write cannot carry is refused before converting.
    if (out) {
        const Config config = load_float_config(choice.path);
        if (gguf_out && q1_0) {
            check_q1_0_exportable(config, choice.path.string());
        } else {
            check_llama2c_header(config, out->string());
        }
    }
    const LoadedModel loaded = load_chosen_model(choice, options);
    print_table(*loaded.report);
    if (!out) return exit_success;
    std::visit(
        [&](const auto& model) {
            using Model = std::remove_cvref_t<decltype(model)>;
            if constexpr (std::is_same_v<Model, BooleanTransformer<1, q1_0_block_columns>>) {
                if (out->extension() == ".gguf") {
                    save_gguf_q1_0_model(model, gguf::File(choice.path), *out);
                    std::printf("wrote %s (GGUF, Q1_0 projections)\n", out->c_str());
                    return;
                }
            }
            if constexpr (requires { save_model(model, *out); }) {
                save_model(model, *out);
                std::printf("wrote %s\n", out->c_str());
            }
        },
        loaded.model);
    return exit_success;
}

}  // namespace

Command quantize_command() { return with_run(quantize_command_line(), run_quantize); }

}  // namespace multibool::llama::cli
