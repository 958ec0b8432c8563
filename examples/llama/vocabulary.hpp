#pragma once
// A GGUF file's tokenizer as its tokenizer.ggml.* metadata states it (the keys of GGUF's spec,
// ggml's docs/gguf.md): what the SentencePiece and byte-level BPE tokenizers are built from.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace multibool::llama {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class TokenType : std::int32_t {
    undefined = 0,
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

struct Vocabulary {
    std::string model;                // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    std::string pre = "default";      // tokenizer.ggml.pre
    std::vector<std::string> pieces;  // tokenizer.ggml.tokens, by id
    std::vector<float> scores;        // tokenizer.ggml.scores; empty when the file has none
    std::vector<TokenType> types;     // tokenizer.ggml.token_type; empty when the file has none
    std::vector<std::string> merges;  // tokenizer.ggml.merges, "left right", highest priority first
    std::optional<int> bos;           // tokenizer.ggml.bos_token_id
    std::optional<int> eos;           // tokenizer.ggml.eos_token_id
    std::optional<int> unknown;       // tokenizer.ggml.unknown_token_id
    std::optional<int> padding;       // tokenizer.ggml.padding_token_id
    bool add_bos = true;              // tokenizer.ggml.add_bos_token
    bool add_eos = false;             // tokenizer.ggml.add_eos_token
    bool add_space_prefix = true;     // tokenizer.ggml.add_space_prefix

    [[nodiscard]] TokenType type(int id) const {
        return types.empty() ? TokenType::normal : types.at(static_cast<std::size_t>(id));
    }
};

}  // namespace multibool::llama
