#pragma once
// Random llama2.c checkpoints and float models for the LLaMA example's tests.
#include <cstddef>
#include <random>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/transformer.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "test_support.hpp"

namespace multibool::testing {

using FloatModel = llama::Transformer<DenseLinear>;

inline llama::Checkpoint random_checkpoint(const llama::Config& c, std::mt19937_64& rng) {
    llama::CheckpointTensors t;
    const std::size_t L = c.n_layers;
    t.token_embedding = random_floats(c.vocab_size * c.dim, rng, 1.0f);
    t.rms_att = random_floats(L * c.dim, rng, 0.2f);
    for (auto& w : t.rms_att) w += 1.0f;
    t.wq = random_floats(L * c.dim * c.dim, rng, 0.2f);
    t.wk = random_floats(L * c.kv_dim() * c.dim, rng, 0.2f);
    t.wv = random_floats(L * c.kv_dim() * c.dim, rng, 0.2f);
    t.wo = random_floats(L * c.dim * c.dim, rng, 0.2f);
    t.rms_ffn = random_floats(L * c.dim, rng, 0.2f);
    for (auto& w : t.rms_ffn) w += 1.0f;
    t.w1 = random_floats(L * c.hidden_dim * c.dim, rng, 0.2f);
    t.w2 = random_floats(L * c.dim * c.hidden_dim, rng, 0.2f);
    t.w3 = random_floats(L * c.hidden_dim * c.dim, rng, 0.2f);
    t.rms_final = random_floats(c.dim, rng, 0.2f);
    for (auto& w : t.rms_final) w += 1.0f;
    if (!c.shared_classifier) t.wcls = random_floats(c.vocab_size * c.dim, rng, 1.0f);
    return llama::Checkpoint(c, std::move(t));
}

inline FloatModel float_model(const llama::Checkpoint& ckpt) {
    return FloatModel::from_checkpoint(
        ckpt, [](MatrixView<const float> w, std::size_t, llama::Projection) { return DenseLinear(w); });
}

}  // namespace multibool::testing
