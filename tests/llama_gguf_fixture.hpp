#pragma once
// A small llama-architecture GGUF file written the way llama.cpp's converters lay one out (the
// llama.* keys, token_embd / blk.N.* / output_norm / output tensors, ne[0] = inputs), with every
// dimension a multiple of 128 so that its projections can be Q1_0. Weights are seeded random
// values; the vocabulary (tokenizer.* keys) is copied from another GGUF file.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "multibool/core/gguf_file.hpp"
#include "multibool/core/gguf_writer.hpp"
#include "multibool/core/half.hpp"

namespace multibool::testing {

struct LlamaGgufShape {
    std::uint32_t dim = 128;
    std::uint32_t hidden = 256;
    std::uint32_t layers = 2;
    std::uint32_t heads = 4;
    std::uint32_t kv_heads = 2;
    std::uint32_t context = 256;
};

inline std::vector<std::byte> f32_bytes(const std::vector<float>& values) {
    std::vector<std::byte> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
}

inline std::vector<std::byte> f16_bytes(const std::vector<float>& values) {
    std::vector<std::byte> bytes(values.size() * sizeof(std::uint16_t));
    for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t bits = half(values[i]).bits();
        std::memcpy(bytes.data() + i * sizeof bits, &bits, sizeof bits);
    }
    return bytes;
}

// The embedding is stored as F16 (a non-projection type a Q1_0 export must copy as it is), the
// rest as F32; the classifier is untied. Without a vocabulary source, the vocabulary is 512
// pieces "t0" .. "t511" (enough for tests that feed token ids).
inline void write_llama_gguf(const std::filesystem::path& path, const std::filesystem::path& vocabulary_source,
                             std::uint64_t seed, const LlamaGgufShape& s = {}) {
    gguf::Metadata tokenizer;
    if (vocabulary_source.empty()) {
        constexpr int pieces = 512;
        std::vector<gguf::Value> tokens;
        std::vector<gguf::Value> scores;
        for (int i = 0; i < pieces; ++i) {
            std::string piece = std::to_string(i);
            piece.insert(piece.begin(), 't');
            tokens.push_back(gguf::Value::text(std::move(piece)));
            scores.push_back(gguf::Value::float32(0.0f));
        }
        tokenizer.set("tokenizer.ggml.model", gguf::Value::text("llama"));
        tokenizer.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::ValueType::string, std::move(tokens)));
        tokenizer.set("tokenizer.ggml.scores", gguf::Value::array(gguf::ValueType::float32, std::move(scores)));
    } else {
        const gguf::File vocabulary(vocabulary_source);
        for (const auto& [key, value] : vocabulary.metadata().entries()) {
            if (key.starts_with("tokenizer.")) tokenizer.set(key, value);
        }
    }
    const std::uint64_t vocab = tokenizer.texts("tokenizer.ggml.tokens").size();
    gguf::Metadata m;
    m.set("general.architecture", gguf::Value::text("llama"));
    m.set("general.name", gguf::Value::text("multibool test model"));
    m.set("llama.context_length", gguf::Value::uint32(s.context));
    m.set("llama.embedding_length", gguf::Value::uint32(s.dim));
    m.set("llama.feed_forward_length", gguf::Value::uint32(s.hidden));
    m.set("llama.block_count", gguf::Value::uint32(s.layers));
    m.set("llama.attention.head_count", gguf::Value::uint32(s.heads));
    m.set("llama.attention.head_count_kv", gguf::Value::uint32(s.kv_heads));
    m.set("llama.rope.dimension_count", gguf::Value::uint32(s.dim / s.heads));
    m.set("llama.rope.freq_base", gguf::Value::float32(10000.0f));
    m.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::float32(1e-5f));
    for (const auto& [key, value] : tokenizer.entries()) m.set(key, value);
    gguf::Writer writer(m);
    std::mt19937_64 rng(seed);
    const auto random = [&](std::size_t n, float stddev, float mean = 0.0f) {
        std::normal_distribution<float> normal(mean, stddev);
        std::vector<float> v(n);
        for (float& x : v) x = normal(rng);
        return v;
    };
    const std::uint64_t kv = std::uint64_t{s.dim} / s.heads * s.kv_heads;
    writer.add_tensor("token_embd.weight", {s.dim, vocab}, gguf::TensorType::F16,
                      f16_bytes(random(s.dim * vocab, 1.0f)));
    writer.add_tensor("output_norm.weight", {s.dim}, gguf::TensorType::F32, f32_bytes(random(s.dim, 0.1f, 1.0f)));
    writer.add_tensor("output.weight", {s.dim, vocab}, gguf::TensorType::F32, f32_bytes(random(s.dim * vocab, 0.1f)));
    const float scale = 1.0f / float(s.dim);
    for (std::uint32_t l = 0; l < s.layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        const auto matrix = [&](const char* name, std::uint64_t in, std::uint64_t out) {
            writer.add_tensor(b + name + ".weight", {in, out}, gguf::TensorType::F32,
                              f32_bytes(random(in * out, 8.0f * scale)));
        };
        writer.add_tensor(b + "attn_norm.weight", {s.dim}, gguf::TensorType::F32, f32_bytes(random(s.dim, 0.1f, 1.0f)));
        matrix("attn_q", s.dim, s.dim);
        matrix("attn_k", s.dim, kv);
        matrix("attn_v", s.dim, kv);
        matrix("attn_output", s.dim, s.dim);
        writer.add_tensor(b + "ffn_norm.weight", {s.dim}, gguf::TensorType::F32, f32_bytes(random(s.dim, 0.1f, 1.0f)));
        matrix("ffn_gate", s.dim, s.hidden);
        matrix("ffn_down", s.hidden, s.dim);
        matrix("ffn_up", s.dim, s.hidden);
    }
    writer.write(path);
}

}  // namespace multibool::testing
