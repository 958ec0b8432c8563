#pragma once
// The model a perplexity, generate or quantize run uses: a float checkpoint (llama2.c or GGUF), a
// converted model file, a GGUF file of Q1_0 kernels, the student of a fine-tuning checkpoint, or a checkpoint converted
// now (fixed K with group or row x column scales, K per projection under a bit budget, or the RTN or GPTQ baseline).
// Loading and converting are compiled once, in model_choice.cpp, for every supported (K, G); the commands visit the
// loaded variant.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <variant>

#include "llama/cli/command_lines.hpp"
#include "llama/cli/options.hpp"
#include "llama/cli/supported_shapes.hpp"
#include "llama/conversion.hpp"
#include "llama/transformer.hpp"
#include "multibool/backends/default_backend.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "multibool/nn/multibool_linear.hpp"

namespace multibool::llama::cli {

// The model the options ask for (requested_model), then what --model holds: a converted file, a
// Q1_0 GGUF file or a fine-tuning checkpoint sets the model's kind and shape itself.
ModelChoice choose_model(const ParsedOptions& options);

template <std::size_t K, std::size_t G>
using GroupScaleModel = BooleanTransformer<K, G>;
// A fine-tuning checkpoint's student as it trains (FineTuner<K, G>::Student: float scales, exact
// products), so that its perplexity is the one the run printed.
template <std::size_t K, std::size_t G>
using FineTunedModel = Transformer<MultiBoolLinear<K, G, float, std::uint64_t, ExactBackend>>;
template <std::size_t K>
using RowColumnModel = Transformer<RowColumnLinear<K>>;
template <std::size_t G>
using BudgetModel = Transformer<BudgetLinear<G>>;

namespace detail {
template <class... Models>
struct ModelList {};
template <class... Group, class... FineTuned, class... RowColumn, class... Budget>
auto any_model(ModelList<Group...>, ModelList<FineTuned...>, ModelList<RowColumn...>, ModelList<Budget...>)
    -> std::variant<Transformer<DenseLinear>, Group..., FineTuned..., RowColumn..., Budget...>;
}  // namespace detail

// Every model type the tool runs: float (and the RTN and GPTQ baselines, held as float layers), then per
// supported (K, G), K and G the group-scale, fine-tuned, row x column and budget models.
using AnyModel =
    decltype(detail::any_model(typename for_every_instantiation<GroupScaleModel, detail::ModelList>::type{},
                               typename for_every_instantiation<FineTunedModel, detail::ModelList>::type{},
                               typename for_every_value<supported_kernels, RowColumnModel, detail::ModelList>::type{},
                               typename for_every_value<supported_groups, BudgetModel, detail::ModelList>::type{}));

struct LoadedModel {
    AnyModel model;
    std::optional<ConversionReport> report;  // for models converted now
};

// Loads or converts the chosen model, with progress and a converted model's totals on stderr.
LoadedModel load_chosen_model(const ModelChoice& choice, const ParsedOptions& options);

}  // namespace multibool::llama::cli
