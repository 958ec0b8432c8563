#pragma once
// What defines a fine-tuning run (finetune.hpp): the flip policy, the batch, the learning rates and
// the loss, with the checks a run applies before its first step. All of it is stored in the
// MBOOLFTS checkpoint (finetune_checkpoint.hpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <unistd.h>

#include "llama/checkpoint.hpp"
#include "llama/distillation.hpp"
#include "multibool/core/shape.hpp"
#include "multibool/training/flip_optimizer.hpp"
#include "multibool/training/schedule.hpp"

namespace multibool::llama {

// The checkpoint stores the code, so these values never change; the names are the library's
// policies (ExpectedImprovementPolicy, BoldPolicy).
enum class FlipPolicyKind : std::uint32_t { expected_improvement = 0, bold = 1 };

inline const char* flip_policy_name(FlipPolicyKind p) noexcept {
    return p == FlipPolicyKind::bold ? "bold" : "expected-improvement";
}

// The policies by name; "stochastic" is the expected-improvement policy's earlier name, still accepted.
inline std::optional<FlipPolicyKind> parse_flip_policy(std::string_view name) noexcept {
    if (name == "bold") return FlipPolicyKind::bold;
    if (name == "expected-improvement" || name == "stochastic") return FlipPolicyKind::expected_improvement;
    return std::nullopt;
}

// BOLD's accumulator storage (BoldPolicy<float>, <half>, <std::int8_t>); stored as a code, like the policy.
enum class AccumulatorKind : std::uint32_t { float32 = 0, float16 = 1, int8 = 2 };

inline const char* accumulator_name(AccumulatorKind a) noexcept {
    switch (a) {
        case AccumulatorKind::float16:
            return "half";
        case AccumulatorKind::int8:
            return "int8";
        case AccumulatorKind::float32:
            break;
    }
    return "float";
}

inline std::optional<AccumulatorKind> parse_accumulator(std::string_view name) noexcept {
    for (const auto a : {AccumulatorKind::float32, AccumulatorKind::float16, AccumulatorKind::int8}) {
        if (name == accumulator_name(a)) return a;
    }
    return std::nullopt;
}

// The matched hidden-state blocks are stored as the bits of one u64.
inline constexpr std::size_t max_hidden_blocks = std::numeric_limits<std::uint64_t>::digits;

// The defaults are the best recipe measured on stories260K (examples/README, "Fine-tuning"): BOLD
// on the last kernel, the float parameters trained beside the scales, and 2 of the 8 sequences
// written by the teacher.
struct FineTuneOptions {
    FlipPolicyKind policy = FlipPolicyKind::bold;
    bool train_all_kernels = false;                          // else only the last kernel flips (the published recipe)
    AccumulatorKind accumulator = AccumulatorKind::float32;  // BOLD's; unused by expected-improvement
    std::size_t batch = 8;                                   // sequences per step
    std::size_t length = 256;                                // tokens per sequence
    std::uint64_t seed = 1;
    // The flip policy's eta: for expected-improvement, the flip probability of an average
    // candidate; for bold, the accumulator's step (its threshold is 1). NaN: the policy's default below.
    double flip_rate = std::numeric_limits<double>::quiet_NaN();
    float scale_learning_rate = 3e-3f;  // AdamW on the scales
    bool train_float = true;            // embedding, norms and classifier by AdamW too
    float float_learning_rate = 3e-3f;
    DistillationOptions loss;
    // Multipliers over the planned steps (schedule.hpp): of both learning rates, and of eta.
    Schedule learning_rate_schedule;
    Schedule flip_schedule;
    // Of each batch's sequences, how many the teacher writes (teacher_samples.hpp); the rest are
    // windows of the training text.
    std::size_t teacher_sequences = 2;

    static constexpr double default_expected_improvement_rate = 5e-5;
    // BOLD's eta is in units of 1 / gradient: a bit flips once eta times its accumulated gradient
    // reaches 1. This gradient is that of a loss averaged over the batch's tokens (distillation.hpp),
    // 1 / (batch x seq) = 1/2048 of the token-summed one, so the published 5e-3 (BoldOptions, Tran &
    // Nguyen, ICLR 2026) does not carry over; 2 (about 1e-3 per summed gradient) was tuned on stories260K.
    static constexpr double default_bold_rate = 2.0;
    [[nodiscard]] double resolved_flip_rate() const noexcept {
        if (!std::isnan(flip_rate)) return flip_rate;
        return policy == FlipPolicyKind::bold ? default_bold_rate : default_expected_improvement_rate;
    }
    [[nodiscard]] TrainableKernels trainable() const noexcept {
        return train_all_kernels ? TrainableKernels::all() : TrainableKernels::last();
    }
};

// Bytes a step's buffers take, about: per token the logits and, per layer, the tape of a block's
// activations (at most 8 vectors of dim and 3 of hidden_dim). Throws std::length_error when the
// product does not fit in a size_t.
inline std::size_t step_bytes(const FineTuneOptions& o, const Config& c) {
    const char* what = "fine-tuning step buffers";
    const std::size_t per_layer = checked_product(what, 8, c.dim) + checked_product(what, 3, c.hidden_dim);
    const std::size_t per_token = c.vocab_size + checked_product(what, c.n_layers, per_layer);
    const std::size_t tokens = checked_product(what, o.batch, o.length);
    return checked_product(what, checked_product(what, tokens, per_token), sizeof(float));
}

// Throws std::invalid_argument naming the first option out of range for this model; returns o.
inline FineTuneOptions check_fine_tune_options(FineTuneOptions o, const Config& c) {
    const auto fail = [](const std::string& what) { throw std::invalid_argument("fine-tuning options: " + what); };
    if (o.batch == 0) fail("batch must be at least 1");
    if (o.teacher_sequences > o.batch) {
        fail("the teacher writes at most the batch's " + std::to_string(o.batch) + " sequences, not " +
             std::to_string(o.teacher_sequences));
    }
    if (o.length < 2 || o.length > c.seq_len) {
        fail("seq must be 2.." + std::to_string(c.seq_len) + " (the model's seq_len), found " +
             std::to_string(o.length));
    }
    const std::string tokens = "batch x seq = " + std::to_string(o.batch) + " x " + std::to_string(o.length);
    std::size_t needed = 0;
    try {
        needed = step_bytes(o, c);
    } catch (const std::length_error&) {
        fail(tokens + " tokens per step: their buffers do not fit in memory sizes");
    }
    // A run, new or resumed from a checkpoint that claims it, that cannot fit is refused here
    // rather than by std::bad_alloc in the first step.
    const long pages = sysconf(_SC_PHYS_PAGES), page_bytes = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_bytes > 0 && needed / std::size_t(page_bytes) >= std::size_t(pages)) {
        const std::size_t gib = std::size_t{1} << 30;
        fail(tokens + " tokens per step need about " + std::to_string(needed / gib) +
             " GiB of buffers; this machine has " +
             std::to_string(std::size_t(pages) / (gib / std::size_t(page_bytes))) + " GiB");
    }
    const double rate = o.resolved_flip_rate();
    if (!(rate >= 0) || !std::isfinite(rate)) fail("the flip rate must be a finite number >= 0");
    if (!(o.scale_learning_rate >= 0) || !(o.float_learning_rate >= 0) || !std::isfinite(o.scale_learning_rate) ||
        !std::isfinite(o.float_learning_rate)) {
        fail("learning rates must be finite numbers >= 0");
    }
    const auto& l = o.loss;
    if (!(l.temperature > 0) || !std::isfinite(l.temperature)) fail("temperature must be a finite number > 0");
    for (float w : {l.kl_weight, l.hidden_weight, l.cross_entropy_weight}) {
        if (!(w >= 0) || !std::isfinite(w)) fail("loss weights must be finite numbers >= 0");
    }
    if (l.kl_weight + l.hidden_weight + l.cross_entropy_weight == 0) fail("every loss weight is 0");
    if (l.hidden_blocks.size() > max_hidden_blocks) {
        fail("a hidden-state block list covers at most " + std::to_string(max_hidden_blocks) + " blocks");
    }
    if (!l.hidden_blocks.empty() && l.hidden_blocks.size() != c.n_layers) {
        fail("the hidden-state block list names " + std::to_string(l.hidden_blocks.size()) + " blocks, the model has " +
             std::to_string(c.n_layers));
    }
    return o;
}

}  // namespace multibool::llama
