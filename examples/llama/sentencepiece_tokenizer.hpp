#pragma once
// llama.cpp's SentencePiece ("SPM", tokenizer.ggml.model = "llama") tokenizer over a GGUF
// Vocabulary: encode() gives what llama_tokenize(add_special = false, parse_special = false)
// gives, token_to_piece() and decode() what llama_token_to_piece and llama_detokenize (special
// = false) render. Checked against llama.cpp's own vectors (ggml-vocab-llama-spm.gguf.inp/.out).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llama/tokenizer.hpp"
#include "llama/vocabulary.hpp"

namespace multibool::llama {

namespace sentencepiece_detail {

// U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's spelling of a space inside pieces.
inline constexpr std::string_view space_mark = "\xE2\x96\x81";

// llama.cpp's symbol length: taken from the high nibble of the first byte only (0x0-0xB: 1,
// 0xC-0xD: 2, 0xE: 3, 0xF: 4), without checking that continuation bytes follow.
inline std::size_t utf8_length(char first) noexcept {
    const auto high = static_cast<unsigned char>(first) >> 4;
    return high < 0xC ? 1 : high < 0xE ? 2 : high == 0xE ? 3 : 4;
}

}  // namespace sentencepiece_detail

class SentencePieceTokenizer {
public:
    // Throws std::invalid_argument naming the problem: no pieces, more than INT32_MAX pieces, a
    // score count or token type count that is neither 0 nor the piece count, a NaN score, a special
    // id (bos, eos, unknown, padding) outside the vocabulary, a duplicate piece (llama.cpp refuses them too)
    // or a byte token not spelled "<0xXX>". Missing scores count as 0 and missing types as
    // normal, as llama.cpp reads such files.
    explicit SentencePieceTokenizer(Vocabulary vocabulary) : vocabulary_(std::move(vocabulary)) {
        const auto fail = [](const std::string& what) {
            throw std::invalid_argument("llama::SentencePieceTokenizer: " + what);
        };
        const Vocabulary& v = vocabulary_;
        check_vocabulary_shape(v, "llama::SentencePieceTokenizer");
        const std::size_t n = v.pieces.size();

        ids_.reserve(n);
        for (std::size_t id = 0; id < n; ++id) {
            if (!v.scores.empty() && std::isnan(v.scores[id])) fail("piece " + std::to_string(id) + " has a NaN score");
            const std::string key = lookup_text(static_cast<int>(id));
            if (const auto [it, inserted] = ids_.emplace(key, static_cast<int>(id)); !inserted) {
                fail("piece \"" + key + "\" appears twice, as ids " + std::to_string(it->second) + " and " +
                     std::to_string(id));
            }
            const TokenType type = v.type(static_cast<int>(id));
            if (type == TokenType::byte && detail::byte_of_piece(v.pieces[id]) < 0) {
                fail("byte token " + std::to_string(id) + " is \"" + v.pieces[id] + "\", not \"<0xXX>\"");
            }
        }
        // Bytes below 0x80 always make one-byte symbols; those in no longer piece never merge.
        std::array<bool, 256> in_longer_piece{};
        for (const auto& entry : ids_) {
            if (entry.first.size() > 1) {
                for (const char c : entry.first) in_longer_piece[static_cast<unsigned char>(c)] = true;
            }
        }
        for (std::size_t b = 0; b < 0x80; ++b) barrier_bytes_[b] = !in_longer_piece[b];

        user_defined_ = UserDefinedPieces(v, [&](int id) { return lookup_text(id); });

        // Byte fallback, as llama.cpp's byte_to_token: the piece "<0xXX>" (upper-case hex), else
        // the one-byte piece (never for byte 0, which llama.cpp looks up as an empty C string),
        // else (where llama.cpp throws) the unknown id; -1 when there is none.
        static constexpr char hex[] = "0123456789ABCDEF";
        for (std::size_t b = 0; b < byte_ids_.size(); ++b) {
            const std::string spelled = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            if (const auto id = find(spelled)) {
                byte_ids_[b] = *id;
            } else if (const auto single = find(std::string(1, static_cast<char>(b))); single && b != 0) {
                byte_ids_[b] = *single;
            } else {
                byte_ids_[b] = v.unknown.value_or(-1);
            }
        }
    }

    [[nodiscard]] std::size_t vocab_size() const noexcept { return vocabulary_.pieces.size(); }
    [[nodiscard]] std::optional<int> bos() const noexcept { return vocabulary_.bos; }
    [[nodiscard]] std::optional<int> eos() const noexcept { return vocabulary_.eos; }
    [[nodiscard]] const Vocabulary& vocabulary() const noexcept { return vocabulary_; }

    // The id whose piece is exactly text (an empty piece is looked up as "[EMPTY_<id>]", the name
    // llama.cpp's loader gives it).
    [[nodiscard]] std::optional<int> find(std::string_view text) const {
        const auto it = ids_.find(text);
        if (it == ids_.end()) return std::nullopt;
        return it->second;
    }

    // The ids of text without BOS/EOS, as llama.cpp's llama_tokenize(add_special = false,
    // parse_special = false) for an SPM vocabulary:
    //  1. Empty text gives no ids (no space prefix either).
    //  2. The text is split at every user-defined piece (longest pieces first, leftmost
    //     occurrences): those become their ids, even without parse_special. Control and unknown
    //     pieces in the text are plain text.
    //  3. Each remaining fragment gets a " " prefix when add_space_prefix and it is the first
    //     fragment or follows a user-defined piece; then every ' ' becomes "▁".
    //  4. The fragment is cut into UTF-8 symbols and merged (encode_fragment).
    // Throws std::invalid_argument for a byte with no byte-fallback id (no "<0xXX>" piece, no
    // one-byte piece, no unknown id); llama.cpp throws std::out_of_range there.
    [[nodiscard]] std::vector<int> encode(std::string_view text) const {
        std::vector<int> ids;
        if (text.empty()) return ids;
        ids.reserve(text.size() / 2 + 1);
        std::string escaped;
        bool after_special = true;
        for (const TextFragment& fragment : user_defined_.split(text)) {
            if (fragment.token >= 0) {
                ids.push_back(fragment.token);
                after_special = true;
                continue;
            }
            const std::string_view raw = text.substr(fragment.offset, fragment.length);
            escaped.clear();
            escaped.reserve(raw.size() + 16);
            if (vocabulary_.add_space_prefix && after_special) escaped += sentencepiece_detail::space_mark;
            for (const char c : raw) {
                if (c == ' ') {
                    escaped += sentencepiece_detail::space_mark;
                } else {
                    escaped += c;
                }
            }
            encode_fragment(escaped, ids);
            after_special = false;
        }
        return ids;
    }

    // One token as llama.cpp's llama_token_to_piece(special = false, lstrip = 0) renders it for
    // SPM: normal pieces with every "▁" turned into ' ', byte tokens as their raw byte,
    // user-defined pieces verbatim, and nothing for control, unknown, unused and undefined
    // tokens. Throws std::out_of_range for an id outside the vocabulary.
    [[nodiscard]] std::string token_to_piece(int id) const {
        checked(id);
        switch (vocabulary_.type(id)) {
            case TokenType::normal: {
                const std::string text = lookup_text(id);
                std::string result;
                result.reserve(text.size());
                for (std::size_t i = 0; i < text.size();) {
                    if (std::string_view(text).substr(i, 3) == sentencepiece_detail::space_mark) {
                        result += ' ';
                        i += 3;
                    } else {
                        result += text[i++];
                    }
                }
                return result;
            }
            case TokenType::byte:
                return std::string(
                    1, static_cast<char>(detail::byte_of_piece(vocabulary_.pieces[static_cast<std::size_t>(id)])));
            case TokenType::user_defined:
                return lookup_text(id);
            default:
                return {};
        }
    }

    // llama.cpp's llama_detokenize(remove_special = false, unparse_special = false) for SPM: the
    // token_to_piece() of every id concatenated, except that when add_space_prefix one leading ' '
    // is dropped from the first id's piece. Only the first id's: when that is BOS (which renders
    // as nothing) no space is dropped (llama.cpp keeps it even when it removes BOS). So, for text
    // t without user-defined pieces or bytes that fall back to <unk>, decode(encode(t)) == t,
    // while with add_space_prefix decode([BOS] + encode(t)) == " " + t.
    [[nodiscard]] std::string decode(std::span<const int> ids) const {
        std::string text;
        bool strip = vocabulary_.add_space_prefix;
        for (const int id : ids) {
            const std::string piece = token_to_piece(id);
            text.append(piece, strip && !piece.empty() && piece.front() == ' ' ? 1 : 0);
            strip = false;
        }
        return text;
    }

private:
    // A piece's text as llama.cpp's loader keys it: empty pieces are renamed "[EMPTY_<id>]".
    [[nodiscard]] std::string lookup_text(int id) const {
        const std::string& piece = vocabulary_.pieces[static_cast<std::size_t>(id)];
        return piece.empty() ? "[EMPTY_" + std::to_string(id) + "]" : piece;
    }

    void checked(int id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= vocabulary_.pieces.size()) {
            throw std::out_of_range("llama::SentencePieceTokenizer: token id " + std::to_string(id) +
                                    " outside a vocabulary of " + std::to_string(vocabulary_.pieces.size()) +
                                    " pieces");
        }
    }

    struct Symbol {
        std::uint32_t start;
        std::uint32_t length;  // 0 once merged into its left neighbour
        std::int32_t prev;
        std::int32_t next;
    };
    struct Pair {
        float score;
        std::int32_t left;
        std::int32_t right;
        std::uint32_t length;  // of the merged text, when pushed
    };
    // a below b in the max-heap: lower score, or the same score further right.
    static bool below(const Pair& a, const Pair& b) noexcept {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }

    // llama.cpp's SPM session over one escaped fragment: UTF-8 symbols (by their first byte),
    // merged as merge_run() does. A one-byte symbol whose byte is in no piece of two bytes or more
    // (often '\n') can never merge, so the runs between such symbols merge independently and
    // give llama.cpp's result with small, cache-friendly heaps.
    void encode_fragment(std::string_view text, std::vector<int>& ids) const {
        if (text.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
            throw std::length_error("llama::SentencePieceTokenizer: a text fragment of " + std::to_string(text.size()) +
                                    " bytes is too long");
        }
        std::vector<Symbol> run;
        std::vector<Pair> heap;
        for (std::size_t offset = 0; offset < text.size();) {
            const std::size_t length = std::min(sentencepiece_detail::utf8_length(text[offset]), text.size() - offset);
            if (length == 1 && barrier_bytes_[static_cast<unsigned char>(text[offset])]) {
                merge_run(text, run, heap, ids);
                run.clear();
                emit(text.substr(offset, 1), ids);
            } else {
                const auto index = static_cast<std::int32_t>(run.size());
                run.push_back(
                    {static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(length), index - 1, index + 1});
            }
            offset += length;
        }
        merge_run(text, run, heap, ids);
    }

    // llama.cpp's merging of a run of symbols, linked by prev/next (-1 at the ends, set here): a
    // max-heap holds every adjacent pair whose concatenation is a piece, by (score desc, left
    // position asc); the best pair is merged and the merged symbol's pairs with its neighbours
    // pushed. Entries made stale by an earlier merge are recognised, as llama.cpp does, by a side
    // merged away (length 0) or lengths that no longer add up (lengths only grow). O(n log n).
    // Then each symbol is emitted.
    void merge_run(std::string_view text, std::vector<Symbol>& symbols, std::vector<Pair>& heap,
                   std::vector<int>& ids) const {
        constexpr std::int32_t none = -1;
        if (symbols.empty()) return;
        symbols.front().prev = none;
        symbols.back().next = none;
        // Adjacent symbols are adjacent in the text: their concatenation is a view, not a copy.
        const auto push = [&](std::int32_t left, std::int32_t right) {
            if (left == none || right == none) return;
            const Symbol& l = symbols[static_cast<std::size_t>(left)];
            const std::uint32_t length = l.length + symbols[static_cast<std::size_t>(right)].length;
            const auto id = find(text.substr(l.start, length));
            if (!id) return;
            heap.push_back({score(*id), left, right, length});
            std::push_heap(heap.begin(), heap.end(), below);
        };
        heap.clear();
        for (std::size_t i = 1; i < symbols.size(); ++i) {
            push(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
        }
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), below);
            const Pair best = heap.back();
            heap.pop_back();
            Symbol& left = symbols[static_cast<std::size_t>(best.left)];
            Symbol& right = symbols[static_cast<std::size_t>(best.right)];
            if (left.length == 0 || right.length == 0 || left.length + right.length != best.length) continue;
            left.length = best.length;
            right.length = 0;
            left.next = right.next;
            if (right.next != none) symbols[static_cast<std::size_t>(right.next)].prev = best.left;
            push(left.prev, best.left);
            push(best.left, left.next);
        }
        for (std::int32_t i = 0; i != none; i = symbols[static_cast<std::size_t>(i)].next) {
            const Symbol& symbol = symbols[static_cast<std::size_t>(i)];
            emit(text.substr(symbol.start, symbol.length), ids);
        }
    }

    // A final symbol: its piece's id, else (llama.cpp would first split it back along its merge
    // history, but merges only ever form pieces, so only unmerged symbols get here) the
    // fallback id of each of its bytes.
    void emit(std::string_view symbol, std::vector<int>& ids) const {
        if (const auto id = find(symbol)) {
            ids.push_back(*id);
            return;
        }
        for (const char c : symbol) {
            const auto byte = static_cast<unsigned char>(c);
            if (byte_ids_[byte] < 0) {
                static constexpr char hex[] = "0123456789ABCDEF";
                throw std::invalid_argument(std::string("llama::SentencePieceTokenizer: byte 0x") + hex[byte >> 4] +
                                            hex[byte & 15] +
                                            " has no byte piece, no one-byte piece and the vocabulary no unknown id");
            }
            ids.push_back(byte_ids_[byte]);
        }
    }

    [[nodiscard]] float score(int id) const {
        return vocabulary_.scores.empty() ? 0.0f : vocabulary_.scores[static_cast<std::size_t>(id)];
    }

    Vocabulary vocabulary_;
    std::unordered_map<std::string, int, detail::PieceHash, std::equal_to<>> ids_;
    UserDefinedPieces user_defined_;
    std::array<int, 256> byte_ids_{};
    std::array<bool, 256> barrier_bytes_{};  // ASCII bytes no piece of two bytes or more contains
};

}  // namespace multibool::llama
