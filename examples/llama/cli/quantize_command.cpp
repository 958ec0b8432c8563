// multibool-llama quantize: a checkpoint converted, its per-projection table, a model file.
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "llama/cli/commands.hpp"
#include "llama/cli/model_choice.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/model_file.hpp"

namespace multibool::llama::cli {

namespace {

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

int run_quantize(const ParsedOptions& options) {
    const ModelChoice choice = choose_model(options);
    if (choice.kind == ModelChoice::Kind::model_file) {
        throw UsageError(choice.path.string() + " is already a converted model file");
    }
    if (choice.kind == ModelChoice::Kind::float_model) throw UsageError("give --kernels, --bits or --rtn");
    const auto out = options.text("out");
    if (out && (choice.kind != ModelChoice::Kind::kernels || choice.row_column)) {
        throw UsageError("--out writes fixed-K group-scale models (--kernels without --scales rowcol)");
    }
    const LoadedModel loaded = load_chosen_model(choice, options);
    print_table(*loaded.report);
    if (!out) return exit_success;
    std::visit(
        [&](const auto& model) {
            if constexpr (requires { save_model(model, std::filesystem::path(*out)); }) {
                save_model(model, std::filesystem::path(*out));
                std::printf("wrote %s\n", out->c_str());
            }
        },
        loaded.model);
    return exit_success;
}

}  // namespace

Command quantize_command() {
    std::vector<OptionSpec> options = model_options(false);
    options.push_back({"out", "F", "the model file to write"});
    return {"quantize", "convert a checkpoint, print the per-projection table, write a model file",
            "Converts a llama2.c checkpoint and prints each projection's shape, K, G, bits per weight (scales\n"
            "and padding counted), relative Frobenius error and, when calibrated, relative output error\n"
            "E||(W - W_hat) x||^2 / E||W x||^2 (square-rooted), then the totals. --out writes a model file\n"
            "(fixed K with group scales).",
            std::move(options), run_quantize};
}

}  // namespace multibool::llama::cli
