#pragma once
// A GGUF file's tokenizer.ggml.* metadata read into a Vocabulary, with llama.cpp's defaults for
// keys a file leaves out (SentencePiece: BOS 1, EOS 2, unknown 0, BOS and the space prefix
// added; byte-level BPE: BOS and EOS 11, neither added, merges required). Works on
// vocabulary-only files (no tensors).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "llama/vocabulary.hpp"
#include "multibool/core/gguf_file.hpp"

namespace multibool::llama {

namespace detail {
// A special token id key, checked against the vocabulary.
inline std::optional<int> special_id(const gguf::Metadata& m, const std::string& key, std::size_t pieces,
                                     std::optional<int> fallback) {
    const gguf::Value* value = m.find(key);
    if (value == nullptr) return fallback;
    const auto id = value->as_signed();
    if (!id) throw FormatError(m.source(), key, "an integer token id", "a value of type " + value->type_text());
    // llama.cpp writes -1 (or 2^32 - 1 as uint32) for "no such token".
    if (*id == -1 || *id == 0xFFFFFFFFLL) return std::nullopt;
    if (*id < 0 || std::uint64_t(*id) >= pieces) {
        throw FormatError(m.source(), key, "an id below the vocabulary size " + std::to_string(pieces),
                          std::to_string(*id));
    }
    return static_cast<int>(*id);
}
}  // namespace detail

inline Vocabulary read_vocabulary(const gguf::File& file) {
    const gguf::Metadata& m = file.metadata();
    const std::string& source = m.source();
    Vocabulary v;
    v.model = m.text("tokenizer.ggml.model");
    const bool sentencepiece = v.model == "llama";
    if (!sentencepiece && v.model != "gpt2") {
        throw FormatError(source, "tokenizer.ggml.model", "\"llama\" (SentencePiece) or \"gpt2\" (byte-level BPE)",
                          "\"" + v.model + "\"");
    }
    v.pre = m.optional_text("tokenizer.ggml.pre").value_or("default");
    v.pieces = m.texts("tokenizer.ggml.tokens");
    if (v.pieces.empty() || v.pieces.size() > std::size_t(INT32_MAX)) {
        throw FormatError(source, "tokenizer.ggml.tokens", "1 to 2^31 - 1 pieces", std::to_string(v.pieces.size()));
    }
    if (m.contains("tokenizer.ggml.scores")) {
        const std::vector<double> scores = m.reals("tokenizer.ggml.scores");
        if (scores.size() != v.pieces.size()) {
            throw FormatError(source, "tokenizer.ggml.scores",
                              std::to_string(v.pieces.size()) + " scores (one per piece)",
                              std::to_string(scores.size()));
        }
        v.scores.reserve(scores.size());
        for (std::size_t i = 0; i < scores.size(); ++i) {
            if (!std::isfinite(scores[i])) {
                throw FormatError(source, "tokenizer.ggml.scores[" + std::to_string(i) + "]", "a finite score",
                                  std::to_string(scores[i]));
            }
            v.scores.push_back(static_cast<float>(scores[i]));
        }
    }
    if (m.contains("tokenizer.ggml.token_type")) {
        const std::vector<std::int64_t> types = m.integers("tokenizer.ggml.token_type");
        if (types.size() != v.pieces.size()) {
            throw FormatError(source, "tokenizer.ggml.token_type",
                              std::to_string(v.pieces.size()) + " types (one per piece)", std::to_string(types.size()));
        }
        v.types.reserve(types.size());
        for (std::size_t i = 0; i < types.size(); ++i) {
            if (types[i] < 0 || types[i] > static_cast<std::int64_t>(TokenType::byte)) {
                throw FormatError(source, "tokenizer.ggml.token_type[" + std::to_string(i) + "]", "a type in 0..6",
                                  std::to_string(types[i]));
            }
            v.types.push_back(static_cast<TokenType>(types[i]));
        }
    }
    // A byte-level BPE vocabulary without merges cannot tokenize: llama.cpp refuses it too.
    if (m.contains("tokenizer.ggml.merges") || !sentencepiece) v.merges = m.texts("tokenizer.ggml.merges");
    const std::size_t n = v.pieces.size();
    const auto fallback = [n](int id) { return std::size_t(id) < n ? std::optional<int>(id) : std::nullopt; };
    constexpr int byte_pair_special = 11;  // llama.cpp's BOS and EOS when a gpt2 vocabulary states none
    v.bos = detail::special_id(m, "tokenizer.ggml.bos_token_id", n, fallback(sentencepiece ? 1 : byte_pair_special));
    v.eos = detail::special_id(m, "tokenizer.ggml.eos_token_id", n, fallback(sentencepiece ? 2 : byte_pair_special));
    v.unknown = detail::special_id(m, "tokenizer.ggml.unknown_token_id", n,
                                   sentencepiece ? std::optional<int>(0) : std::nullopt);
    v.padding = detail::special_id(m, "tokenizer.ggml.padding_token_id", n, std::nullopt);
    v.add_bos = m.optional_bool("tokenizer.ggml.add_bos_token").value_or(sentencepiece);
    v.add_eos = m.optional_bool("tokenizer.ggml.add_eos_token").value_or(false);
    v.add_space_prefix = m.optional_bool("tokenizer.ggml.add_space_prefix").value_or(sentencepiece);
    return v;
}

inline Vocabulary load_vocabulary(const std::filesystem::path& path) { return read_vocabulary(gguf::File(path)); }

}  // namespace multibool::llama
