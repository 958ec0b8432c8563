#pragma once
// A GGUF file's tokenizer as its tokenizer.ggml.* metadata states it (the keys of GGUF's spec,
// ggml's docs/gguf.md): what the SentencePiece and byte-level BPE tokenizers are built from.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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

// What both tokenizers require of a vocabulary, however it was built: pieces that int ids can
// number, one score and one type per piece when there are any, special ids among the pieces.
// std::invalid_argument starting with `who` otherwise.
inline void check_vocabulary_shape(const Vocabulary& v, const std::string& who) {
    const auto fail = [&](const std::string& what) { throw std::invalid_argument(who + ": " + what); };
    const std::size_t n = v.pieces.size();
    if (n == 0) fail("the vocabulary has no pieces");
    if (n > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
        fail(std::to_string(n) + " pieces do not fit int token ids");
    }
    if (!v.scores.empty() && v.scores.size() != n) {
        fail(std::to_string(v.scores.size()) + " scores for " + std::to_string(n) + " pieces");
    }
    if (!v.types.empty() && v.types.size() != n) {
        fail(std::to_string(v.types.size()) + " token types for " + std::to_string(n) + " pieces");
    }
    const auto check_id = [&](const std::optional<int>& id, const char* name, const char* key) {
        if (id && (*id < 0 || static_cast<std::size_t>(*id) >= n)) {
            fail(std::string(name) + " id " + std::to_string(*id) + " (" + key + " = " + std::to_string(*id) +
                 ") outside a vocabulary of " + std::to_string(n) + " pieces");
        }
    };
    check_id(v.bos, "bos", "tokenizer.ggml.bos_token_id");
    check_id(v.eos, "eos", "tokenizer.ggml.eos_token_id");
    check_id(v.unknown, "unknown", "tokenizer.ggml.unknown_token_id");
    check_id(v.padding, "padding", "tokenizer.ggml.padding_token_id");
}

// A stretch of a text: an occurrence of user-defined token `token`, or text to tokenize (-1).
struct TextFragment {
    std::size_t offset;
    std::size_t length;
    int token;
};

// A vocabulary's user-defined pieces, which llama.cpp cuts out of a text before tokenizing it,
// even without parse_special (its tokenizer_st_partition).
class UserDefinedPieces {
public:
    UserDefinedPieces() = default;
    // piece_text(id): the text a piece is matched as (the SentencePiece loader renames empty ones).
    template <class PieceText>
    UserDefinedPieces(const Vocabulary& v, PieceText piece_text) {
        for (std::size_t id = 0; id < v.pieces.size(); ++id) {
            if (v.type(static_cast<int>(id)) == TokenType::user_defined) {
                pieces_.emplace_back(static_cast<int>(id), piece_text(static_cast<int>(id)));
            }
        }
        std::stable_sort(pieces_.begin(), pieces_.end(),
                         [](const auto& a, const auto& b) { return a.second.size() > b.second.size(); });
    }

    // Each piece in turn, longest first, cuts every text fragment at its leftmost non-overlapping
    // occurrences. An empty text has no fragments.
    [[nodiscard]] std::vector<TextFragment> split(std::string_view text) const {
        std::vector<TextFragment> fragments;
        if (text.empty()) return fragments;
        fragments.push_back({0, text.size(), -1});
        std::vector<TextFragment> cut;
        for (const auto& [id, piece] : pieces_) {
            cut.clear();
            for (const TextFragment& f : fragments) {
                if (f.token >= 0) {
                    cut.push_back(f);
                    continue;
                }
                const std::size_t stop = f.offset + f.length;
                std::size_t start = f.offset;
                for (std::size_t match; (match = text.substr(0, stop).find(piece, start)) != std::string_view::npos;) {
                    if (match > start) cut.push_back({start, match - start, -1});
                    cut.push_back({match, piece.size(), id});
                    start = match + piece.size();
                }
                if (start < stop) cut.push_back({start, stop - start, -1});
            }
            fragments.swap(cut);
        }
        return fragments;
    }

private:
    std::vector<std::pair<int, std::string>> pieces_;  // (id, text), longest text first
};

}  // namespace multibool::llama
