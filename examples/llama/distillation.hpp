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

// Fills dlogits (tokens x vocab) and hidden_gradients (one per block; left empty for blocks not
// matched) with the gradient of the loss, and returns its parts. Tokens are split among threads;
// the parts are summed in token order, so the result does not depend on the thread count.
inline LossParts distillation_loss(const DistillationBatch& batch, const DistillationOptions& options,
                                   MatrixView<float> dlogits, std::vector<std::vector<float>>& hidden_gradients,
                                   std::size_t threads) {
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
    const bool kl = options.kl_weight != 0;
    if (kl && (batch.teacher_logits.rows() != tokens || batch.teacher_logits.cols() != vocab)) {
        throw std::invalid_argument("distillation_loss: the teacher's logits do not match the student's");
    }
    const double inv_tokens = 1.0 / double(tokens);
    const float temperature = options.temperature;
    std::vector<double> kl_parts(tokens, 0.0), cross_entropy_parts(tokens, 0.0);
    parallel_for(threads, tokens, 64, [&](std::size_t begin, std::size_t end) {
        std::vector<double> student(vocab), teacher(vocab);
        for (std::size_t t = begin; t < end; ++t) {
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
            cross_entropy_parts[t] = -student[std::size_t(target)];
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
            kl_parts[t] = double(temperature) * temperature * divergence;
        }
    });
    LossParts parts;
    for (std::size_t t = 0; t < tokens; ++t) {
        parts.kl += kl_parts[t];
        parts.cross_entropy += cross_entropy_parts[t];
    }
    parts.kl *= inv_tokens;
    parts.cross_entropy *= inv_tokens;

    const std::size_t blocks = batch.student_hidden.size();
    hidden_gradients.resize(blocks);
    std::size_t matched = 0;
    for (std::size_t l = 0; l < blocks; ++l) matched += options.matches(l) ? 1 : 0;
    for (std::size_t l = 0; l < blocks; ++l) {
        hidden_gradients[l].clear();
        if (!options.matches(l)) continue;
        const auto student = batch.student_hidden[l].data();
        if (l >= batch.teacher_hidden.size() || batch.teacher_hidden[l].data().size() != student.size()) {
            throw std::invalid_argument("distillation_loss: the teacher's hidden state " + std::to_string(l) +
                                        " does not match the student's");
        }
        const auto teacher = batch.teacher_hidden[l].data();
        const double norm = 1.0 / (double(student.size()) * double(matched));
        hidden_gradients[l].resize(student.size());
        double sum = 0.0;
        for (std::size_t e = 0; e < student.size(); ++e) {
            const double diff = double(student[e]) - double(teacher[e]);
            sum += diff * diff;
            hidden_gradients[l][e] = float(options.hidden_weight * 2.0 * diff * norm);
        }
        parts.hidden_mse += sum * norm;
    }
    parts.total = options.kl_weight * parts.kl + options.hidden_weight * parts.hidden_mse +
                  options.cross_entropy_weight * parts.cross_entropy;
    return parts;
}

}  // namespace multibool::llama
