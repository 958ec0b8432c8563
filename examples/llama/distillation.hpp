#pragma once
// The fine-tuning objective (docs/METHOD.md §5): knowledge distillation from the float teacher,
//   L = w_kl * T^2 * mean_t KL(softmax(z_teacher / T) || softmax(z_student / T))
//     + gamma * mean over the chosen blocks of mean_{t,j} (h_student - h_teacher)^2
//     + w_ce * mean_t -log softmax(z_student)[target_t],
// the published recipe being T = 1, gamma = 10, w_ce = 0; cross-entropy alone is the fallback.
// The T^2 factor keeps the KL gradient's size independent of T (Hinton et al., 2015).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool::llama {

struct DistillationOptions {
    float temperature = 1.0f;
    float kl_weight = 1.0f;
    float hidden_weight = 10.0f;  // gamma
    float cross_entropy_weight = 0.0f;
    std::vector<bool> hidden_blocks;  // which blocks' outputs are matched; empty: all

    [[nodiscard]] bool needs_teacher() const noexcept { return kl_weight != 0 || hidden_weight != 0; }
    [[nodiscard]] bool matches(std::size_t block) const noexcept {
        return hidden_weight != 0 && (hidden_blocks.empty() || (block < hidden_blocks.size() && hidden_blocks[block]));
    }
    // How many of a model's `blocks` are matched.
    [[nodiscard]] std::size_t matched_blocks(std::size_t blocks) const noexcept {
        std::size_t matched = 0;
        for (std::size_t l = 0; l < blocks; ++l) matched += matches(l) ? 1 : 0;
        return matched;
    }
};

struct LossParts {
    double kl = 0.0;             // mean KL over tokens (times T^2)
    double hidden_mse = 0.0;     // mean over matched blocks of the mean squared difference
    double cross_entropy = 0.0;  // mean over tokens, computed whatever its weight
    double total = 0.0;          // the weighted sum that is optimized
};

// Student and teacher outputs of one batch. Teacher views may be empty when their weight is 0.
struct DistillationBatch {
    MatrixView<const float> student_logits;
    MatrixView<const float> teacher_logits;
    std::span<const MatrixView<const float>> student_hidden;
    std::span<const MatrixView<const float>> teacher_hidden;
    std::span<const int> targets;
};

// Tokens [first, last) of a batch.
struct TokenRange {
    std::size_t first = 0;
    std::size_t last = 0;
};

// Each token's part of the loss before the means divide it: its KL (times T^2) and cross-entropy,
// and its squared hidden-state differences summed over the matched blocks.
struct TokenLosses {
    std::vector<double> kl, cross_entropy, hidden_squares;  // one entry per token of the batch

    void resize(std::size_t tokens) {
        kl.assign(tokens, 0.0);
        cross_entropy.assign(tokens, 0.0);
        hidden_squares.assign(tokens, 0.0);
    }
};

// For the tokens of `range` only (every view covers the whole batch; other rows are not read):
// their rows of dlogits (tokens x vocab) and of hidden_gradients (one per block, tokens x dim,
// sized by this call, left empty for blocks not matched) get the gradient of the loss over the
// whole batch, and their entries of `losses` (sized to the batch by this call when it is not) their
// parts. Tokens are split among threads; every value is a function of its token alone.
inline void distillation_terms(const DistillationBatch& batch, const DistillationOptions& options, TokenRange range,
                               MatrixView<float> dlogits, std::vector<std::vector<float>>& hidden_gradients,
                               TokenLosses& losses, std::size_t threads) {
    const std::size_t tokens = batch.student_logits.rows();
    const std::size_t vocab = batch.student_logits.cols();
    if (!(options.temperature > 0) || !std::isfinite(options.temperature)) {
        throw std::invalid_argument("distillation_loss: temperature must be a finite number > 0, found " +
                                    std::to_string(options.temperature));
    }
    if (batch.targets.size() != tokens || dlogits.rows() != tokens || dlogits.cols() != vocab) {
        throw std::invalid_argument("distillation_loss: " + std::to_string(batch.targets.size()) + " targets and a " +
                                    std::to_string(dlogits.rows()) + "x" + std::to_string(dlogits.cols()) +
                                    " gradient for " + std::to_string(tokens) + "x" + std::to_string(vocab) +
                                    " logits");
    }
    if (range.first > range.last || range.last > tokens) {
        throw std::invalid_argument("distillation_loss: tokens " + std::to_string(range.first) + ".." +
                                    std::to_string(range.last) + " of a batch of " + std::to_string(tokens));
    }
    const bool kl = options.kl_weight != 0;
    if (kl && (batch.teacher_logits.rows() != tokens || batch.teacher_logits.cols() != vocab)) {
        throw std::invalid_argument("distillation_loss: the teacher's logits do not match the student's");
    }
    if (losses.kl.size() != tokens) losses.resize(tokens);
    const double inv_tokens = 1.0 / double(tokens);
    const float temperature = options.temperature;
    parallel_for(threads, range.last - range.first, 64, [&](std::size_t begin, std::size_t end) {
        std::vector<double> student(vocab), teacher(vocab);
        for (std::size_t t = range.first + begin; t < range.first + end; ++t) {
            const auto z = batch.student_logits.row(t);
            const auto target = batch.targets[t];
            if (target < 0 || std::size_t(target) >= vocab) {
                throw std::out_of_range("distillation_loss: target " + std::to_string(target) + " at token " +
                                        std::to_string(t) + " is outside the vocabulary of " + std::to_string(vocab));
            }
            // log-softmax in double at temperature 1 (cross-entropy) and T (KL).
            const auto log_softmax = [&](std::span<const float> logits, double scale, std::vector<double>& out) {
                const double max = *std::ranges::max_element(logits) * scale;
                double sum = 0.0;
                for (std::size_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) * scale - max);
                const double log_sum = std::log(sum) + max;
                for (std::size_t v = 0; v < vocab; ++v) out[v] = double(logits[v]) * scale - log_sum;
            };
            log_softmax(z, 1.0, student);
            losses.cross_entropy[t] = -student[std::size_t(target)];
            const auto grad = dlogits.row(t);
            for (std::size_t v = 0; v < vocab; ++v) {
                const double onehot = v == std::size_t(target) ? 1.0 : 0.0;
                grad[v] = float(options.cross_entropy_weight * (std::exp(student[v]) - onehot) * inv_tokens);
            }
            if (!kl) continue;
            const double scale = 1.0 / temperature;
            log_softmax(z, scale, student);
            log_softmax(batch.teacher_logits.row(t), scale, teacher);
            double divergence = 0.0;
            for (std::size_t v = 0; v < vocab; ++v) {
                const double p = std::exp(teacher[v]);
                divergence += p * (teacher[v] - student[v]);
                // d(T^2 KL)/dz_v = T (q_v - p_v) with q the student's softmax at T.
                grad[v] += float(options.kl_weight * temperature * (std::exp(student[v]) - p) * inv_tokens);
            }
            losses.kl[t] = double(temperature) * temperature * divergence;
        }
    });

    const std::size_t blocks = batch.student_hidden.size();
    hidden_gradients.resize(blocks);
    const std::size_t matched = options.matched_blocks(blocks);
    for (std::size_t t = range.first; t < range.last; ++t) losses.hidden_squares[t] = 0.0;
    for (std::size_t l = 0; l < blocks; ++l) {
        if (!options.matches(l)) {
            hidden_gradients[l].clear();
            continue;
        }
        const MatrixView<const float> student = batch.student_hidden[l];
        if (l >= batch.teacher_hidden.size() || batch.teacher_hidden[l].rows() != student.rows() ||
            batch.teacher_hidden[l].cols() != student.cols() || student.rows() != tokens) {
            throw std::invalid_argument("distillation_loss: the teacher's hidden state " + std::to_string(l) +
                                        " does not match the student's");
        }
        const MatrixView<const float> teacher = batch.teacher_hidden[l];
        const double norm = 1.0 / (double(student.data().size()) * double(matched));
        hidden_gradients[l].resize(student.data().size());
        for (std::size_t t = range.first; t < range.last; ++t) {
            double sum = 0.0;
            float* const gradient = hidden_gradients[l].data() + t * student.cols();
            for (std::size_t j = 0; j < student.cols(); ++j) {
                const double diff = double(student(t, j)) - double(teacher(t, j));
                sum += diff * diff;
                gradient[j] = float(options.hidden_weight * 2.0 * diff * norm);
            }
            losses.hidden_squares[t] += sum;
        }
    }
}

// The loss from every token's parts, summed in token order.
inline LossParts sum_losses(const TokenLosses& losses, const DistillationOptions& options, std::size_t hidden_width,
                            std::size_t blocks) {
    const std::size_t tokens = losses.kl.size();
    LossParts parts;
    double hidden = 0.0;
    for (std::size_t t = 0; t < tokens; ++t) {
        parts.kl += losses.kl[t];
        parts.cross_entropy += losses.cross_entropy[t];
        hidden += losses.hidden_squares[t];
    }
    parts.kl /= double(tokens);
    parts.cross_entropy /= double(tokens);
    const std::size_t matched = options.matched_blocks(blocks);
    if (matched != 0) parts.hidden_mse = hidden / (double(tokens) * double(hidden_width) * double(matched));
    parts.total = options.kl_weight * parts.kl + options.hidden_weight * parts.hidden_mse +
                  options.cross_entropy_weight * parts.cross_entropy;
    return parts;
}

// Fills dlogits (tokens x vocab) and hidden_gradients (one per block; left empty for blocks not
// matched) with the gradient of the loss, and returns its parts. Tokens are split among threads;
// the parts are summed in token order, so the result does not depend on the thread count.
inline LossParts distillation_loss(const DistillationBatch& batch, const DistillationOptions& options,
                                   MatrixView<float> dlogits, std::vector<std::vector<float>>& hidden_gradients,
                                   std::size_t threads) {
    TokenLosses losses;
    const std::size_t tokens = batch.student_logits.rows();
    distillation_terms(batch, options, {0, tokens}, dlogits, hidden_gradients, losses, threads);
    const std::size_t width = batch.student_hidden.empty() ? 0 : batch.student_hidden[0].cols();
    return sum_losses(losses, options, width, batch.student_hidden.size());
}

}  // namespace multibool::llama
