#pragma once
// llama2.c's tokenizer: its file (int32 max_token_length, then per piece until the end of the
// file: float32 score, int32 byte length, the bytes; shared/assets/README.md), its BPE encode()
// and its decode(). Ids: 0 <unk>, 1 BOS, 2 EOS, byte fallback pieces "<0x00>".."<0xFF>" at
// byte + 3.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <queue>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "multibool/core/binary_io.hpp"

namespace multibool::llama {

namespace detail {

// <unk>, <s>, </s>, then one piece per byte value.
inline constexpr int byte_piece_offset = 3;
inline constexpr std::size_t min_tokenizer_pieces = byte_piece_offset + 256;
// load_tokenizer's bound on max_token_length (llama2.c models use at most a few dozen).
inline constexpr std::int32_t max_piece_bytes = 65536;
// llama2.c's initial best score: a merge is applied only when its piece scores strictly above it.
inline constexpr float no_merge_score = -1e10f;

// Every byte value once, so decode() can return a one-byte view of any of them.
inline constexpr std::array<char, 256> all_bytes = [] {
    std::array<char, 256> bytes{};
    for (std::size_t b = 0; b < bytes.size(); ++b) bytes[b] = static_cast<char>(b);
    return bytes;
}();

inline int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// The byte a piece spelled exactly "<0xXX>" (either case of hex digits) stands for, else -1.
inline int byte_of_piece(std::string_view piece) noexcept {
    if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
    const int high = hex_digit(piece[3]);
    const int low = hex_digit(piece[4]);
    return high < 0 || low < 0 ? -1 : high * 16 + low;
}

inline bool is_utf8_continuation(char c) noexcept { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Lets the piece table be searched with string_views, without building a std::string.
struct PieceHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// tokenizer.decode(tokens[i - 1], tokens[i]) concatenated, with previous = -1 for tokens[0].
template <class AnyTokenizer>
std::string decode_sequence(const AnyTokenizer& tokenizer, std::span<const int> tokens) {
    std::string text;
    int previous = -1;
    for (const int token : tokens) {
        text += tokenizer.decode(previous, token);
        previous = token;
    }
    return text;
}

}  // namespace detail

class Tokenizer {
public:
    static constexpr int bos = 1;
    static constexpr int eos = 2;

    // Throws std::invalid_argument unless there is one finite score per piece, at least 259 pieces
    // (3 specials + 256 byte pieces) and a " " piece (the dummy prefix). Pieces are not checked
    // against a max_token_length here (load_tokenizer checks the file's); max_token_length() is
    // the longest piece. Duplicate pieces are allowed: lookups find the first id.
    Tokenizer(std::vector<std::string> pieces, std::vector<float> scores)
        : pieces_(std::move(pieces)), scores_(std::move(scores)) {
        if (pieces_.size() != scores_.size()) {
            throw std::invalid_argument("llama::Tokenizer: " + std::to_string(pieces_.size()) + " pieces but " +
                                        std::to_string(scores_.size()) + " scores");
        }
        if (pieces_.size() < detail::min_tokenizer_pieces) {
            throw std::invalid_argument("llama::Tokenizer: " + std::to_string(pieces_.size()) +
                                        " pieces, at least 259 needed (<unk>, <s>, </s> and 256 byte pieces)");
        }
        if (pieces_.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
            throw std::invalid_argument("llama::Tokenizer: " + std::to_string(pieces_.size()) +
                                        " pieces do not fit int token ids");
        }
        ids_.reserve(pieces_.size());
        for (std::size_t id = 0; id < pieces_.size(); ++id) {
            if (!std::isfinite(scores_[id])) {
                throw std::invalid_argument("llama::Tokenizer: piece " + std::to_string(id) + " has score " +
                                            std::to_string(scores_[id]) + ", scores must be finite");
            }
            ids_.emplace(pieces_[id], static_cast<int>(id));  // keeps the first id of a duplicate
            max_token_length_ = std::max(max_token_length_, pieces_[id].size());
        }
        const auto space = find(" ");
        if (!space) throw std::invalid_argument("llama::Tokenizer: no \" \" piece (the dummy prefix)");
        space_ = *space;
        // Byte fallback emits id byte + 3 for any byte: those ids must be the byte pieces.
        for (std::size_t byte = 0; byte < 256; ++byte) {
            const std::string& text = pieces_[byte + detail::byte_piece_offset];
            if (detail::byte_of_piece(text) != int(byte)) {
                throw std::invalid_argument("llama::Tokenizer: piece " +
                                            std::to_string(byte + detail::byte_piece_offset) + " is \"" + text +
                                            "\", byte fallback needs the byte piece of " + std::to_string(byte));
            }
        }
    }

    [[nodiscard]] std::size_t vocab_size() const noexcept { return pieces_.size(); }
    [[nodiscard]] std::size_t max_token_length() const noexcept { return max_token_length_; }
    [[nodiscard]] const std::string& piece(int id) const { return pieces_[checked(id)]; }
    [[nodiscard]] float score(int id) const { return scores_[checked(id)]; }
    // The first id whose piece is exactly text.
    [[nodiscard]] std::optional<int> find(std::string_view text) const {
        const auto it = ids_.find(text);
        if (it == ids_.end()) return std::nullopt;
        return it->second;
    }

    // llama2.c's encode(): [BOS], the " " piece when text is non-empty, then per UTF-8 group (a
    // byte and up to 3 continuation bytes after it, whatever the first byte is, as llama2.c
    // groups them) its piece, or one byte piece (byte + 3) per byte when the group is not a
    // piece; then merges as llama2.c does (merge_pairs); then [EOS]. Unlike llama2.c, which reads
    // a C string, a NUL byte does not end the text: it is encoded like any other byte.
    [[nodiscard]] std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos) const {
        std::vector<int> tokens;
        tokens.reserve(text.size() + 3);
        if (add_bos) tokens.push_back(bos);
        if (!text.empty()) tokens.push_back(space_);
        for (std::size_t start = 0; start < text.size();) {
            std::size_t length = 1;
            while (length < 4 && start + length < text.size() && detail::is_utf8_continuation(text[start + length])) {
                ++length;
            }
            const std::string_view group = text.substr(start, length);
            if (const auto id = find(group)) {
                tokens.push_back(*id);
            } else {
                for (char c : group) tokens.push_back(static_cast<unsigned char>(c) + detail::byte_piece_offset);
            }
            start += length;
        }
        merge_pairs(tokens);
        if (add_eos) tokens.push_back(eos);
        return tokens;
    }

    // llama2.c's decode(previous, token): the piece, without its leading ' ' when previous is
    // BOS; a piece spelled "<0xXX>" (after that strip) is the raw byte. Specials (<unk>, BOS,
    // EOS) come back as their pieces. The view stays valid as long as this tokenizer.
    // Deviation: llama2.c parses byte pieces with sscanf("<0x%02hhX>"), which also accepts
    // malformed spellings, and returns byte 0 as an empty C string; here only the exact
    // six-character spelling is a byte piece and byte 0 is a one-byte view.
    [[nodiscard]] std::string_view decode(int previous, int token) const {
        std::string_view text = piece(token);
        if (previous == bos && !text.empty() && text.front() == ' ') text.remove_prefix(1);
        if (const int byte = detail::byte_of_piece(text); byte >= 0) {
            return {&detail::all_bytes[static_cast<std::size_t>(byte)], 1};
        }
        return text;
    }

    // decode(tokens[i - 1], tokens[i]) concatenated, with previous = -1 for tokens[0]: nothing is
    // stripped from the first token, and a leading BOS appears as its piece. So for non-empty
    // text: decode(encode(text, false, false)) == " " + text (the dummy prefix), and
    // decode(encode(text, true, false)) == piece(bos) + text (the prefix is stripped after BOS),
    // provided no merge joins BOS with what follows and no merge spells a byte piece's name.
    [[nodiscard]] std::string decode(std::span<const int> tokens) const {
        return detail::decode_sequence(*this, tokens);
    }

private:
    [[nodiscard]] std::size_t checked(int id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size()) {
            throw std::out_of_range("llama::Tokenizer: token id " + std::to_string(id) + " outside a vocabulary of " +
                                    std::to_string(pieces_.size()) + " pieces");
        }
        return static_cast<std::size_t>(id);
    }

    // llama2.c merges by rescanning every adjacent pair after each merge and applying the one whose
    // concatenation is the highest-scoring piece (strictly above -1e10; the leftmost on ties): O(n²)
    // lookups, minutes for a 500 KB text. Here the tokens form a doubly linked list and a heap holds
    // the candidate pairs, ordered by (score desc, left position asc), which is that same rule. A
    // merge rewrites the left node and unlinks the right one, so surviving nodes keep their order and
    // a node's original index orders positions. The merge bumps the version of both nodes: heap
    // entries made before carry the old versions and are skipped when popped (lazy invalidation),
    // and the two new pairs around the merged node are pushed. The heap so always holds every
    // current pair, and pops exactly llama2.c's choice: O(n log n) overall. BOS, when present, is a
    // token like the others, as in llama2.c.
    void merge_pairs(std::vector<int>& tokens) const {
        constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
        struct Node {
            int token;
            std::uint32_t version;
            std::size_t prev;
            std::size_t next;
        };
        struct Candidate {
            float score;
            int merged;
            std::size_t left;
            std::size_t right;
            std::uint32_t left_version;
            std::uint32_t right_version;
        };
        struct Worse {  // a below b in the heap: lower score, or same score further right
            bool operator()(const Candidate& a, const Candidate& b) const noexcept {
                return a.score < b.score || (a.score == b.score && a.left > b.left);
            }
        };

        const std::size_t n = tokens.size();
        if (n < 2) return;
        std::vector<Node> nodes(n);
        for (std::size_t i = 0; i < n; ++i) nodes[i] = {tokens[i], 0, i == 0 ? none : i - 1, i + 1 == n ? none : i + 1};

        std::vector<Candidate> storage;
        storage.reserve(2 * n);
        std::priority_queue<Candidate, std::vector<Candidate>, Worse> heap(Worse{}, std::move(storage));
        std::string joined;
        joined.reserve(2 * max_token_length_);
        const auto push = [&](std::size_t left, std::size_t right) {
            joined = pieces_[static_cast<std::size_t>(nodes[left].token)];
            joined += pieces_[static_cast<std::size_t>(nodes[right].token)];
            const auto it = ids_.find(joined);
            if (it == ids_.end()) return;
            const float score = scores_[static_cast<std::size_t>(it->second)];
            if (!(score > detail::no_merge_score)) return;
            heap.push({score, it->second, left, right, nodes[left].version, nodes[right].version});
        };
        for (std::size_t i = 0; i + 1 < n; ++i) push(i, i + 1);

        while (!heap.empty()) {
            const Candidate best = heap.top();
            heap.pop();
            Node& left = nodes[best.left];
            Node& right = nodes[best.right];
            if (left.version != best.left_version || right.version != best.right_version || left.next != best.right) {
                continue;  // stale: one side was merged since this pair was pushed
            }
            left.token = best.merged;
            ++left.version;
            left.next = right.next;
            if (right.next != none) nodes[right.next].prev = best.left;
            ++right.version;  // unlinked: no entry can match it again
            right.next = right.prev = none;
            if (left.prev != none) push(left.prev, best.left);
            if (left.next != none) push(best.left, left.next);
        }

        tokens.clear();
        for (std::size_t i = 0; i != none; i = nodes[i].next) tokens.push_back(nodes[i].token);
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int, detail::PieceHash, std::equal_to<>> ids_;
    std::size_t max_token_length_ = 0;
    int space_ = 0;
};

// Reads and validates a whole tokenizer file, reading pieces until the end of the file. Throws
// FormatError naming the file, the field ("max_token_length", "piece 17 score", "piece 17
// length", "piece 17 bytes", or "pieces" for what the Tokenizer constructor refuses: too few
// pieces, no " " piece, ids 3..258 not the byte pieces) and the expected vs found value.
inline Tokenizer load_tokenizer(const std::filesystem::path& path) {
    std::ifstream in = open_for_reading(path);
    const std::string file = path.string();
    BinaryReader reader(in, file);

    const std::int32_t max_length = reader.read<std::int32_t>("max_token_length");
    if (max_length < 1 || max_length > detail::max_piece_bytes) {
        throw FormatError(file, "max_token_length", "a value in [1, " + std::to_string(detail::max_piece_bytes) + "]",
                          std::to_string(max_length));
    }

    std::vector<std::string> pieces;
    std::vector<float> scores;
    while (in.peek() != std::ifstream::traits_type::eof()) {
        const std::string field = "piece " + std::to_string(pieces.size());
        const float score = reader.read<float>(field + " score");
        if (!std::isfinite(score)) throw FormatError(file, field + " score", "a finite float32", std::to_string(score));
        const std::int32_t length = reader.read<std::int32_t>(field + " length");
        if (length < 0 || length > max_length) {
            throw FormatError(file, field + " length",
                              "a byte count in [0, max_token_length = " + std::to_string(max_length) + "]",
                              std::to_string(length));
        }
        std::string bytes(static_cast<std::size_t>(length), '\0');
        reader.read(std::span<char>(bytes), field + " bytes");
        pieces.push_back(std::move(bytes));
        scores.push_back(score);
    }

    try {
        return Tokenizer(std::move(pieces), std::move(scores));
    } catch (const std::invalid_argument& e) {
        throw FormatError(file, "pieces", "a llama2.c vocabulary", e.what());
    }
}

}  // namespace multibool::llama
