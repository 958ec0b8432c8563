#pragma once
// llama.cpp's byte-level BPE tokenizer (tokenizer.ggml.model = "gpt2") with the GPT-2
// pre-tokenizer (tokenizer.ggml.pre = "gpt-2"): encode() gives what llama_tokenize gives with
// add_special = false and parse_special = false, id for id; token_to_piece() renders a token as
// llama_token_to_piece(special = false) does.
//
// The pipeline: user-defined tokens are cut out of the text first (llama.cpp does so even when
// special tokens are not parsed); each remaining fragment is decoded to code points, split into
// words by the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as llama.cpp's hand-written matcher for it splits them, each word's UTF-8 bytes are spelled
// with GPT-2's byte-to-unicode alphabet, and the word's characters are merged by rank.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
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
#include "llama/unicode_categories.hpp"
#include "llama/vocabulary.hpp"

namespace multibool::llama {

namespace detail::byte_pair {

// What the GPT-2 pattern distinguishes: a letter (\p{L}), a number (\p{N}), whitespace (\s),
// anything else, and "past the end of the fragment" (which matches nothing).
enum class CharClass : std::uint8_t { end, letter, number, whitespace, other };

inline bool in_ranges(std::span<const unicode::CodePointRange> ranges, char32_t cp) noexcept {
    const auto after = std::upper_bound(ranges.begin(), ranges.end(), cp,
                                        [](char32_t c, const unicode::CodePointRange& r) { return c < r.first; });
    return after != ranges.begin() && cp <= std::prev(after)->last;
}

inline CharClass classify_slow(char32_t cp) noexcept {
    if (in_ranges(unicode::letter_ranges, cp)) return CharClass::letter;
    if (in_ranges(unicode::number_ranges, cp)) return CharClass::number;
    if (in_ranges(unicode::whitespace_ranges, cp)) return CharClass::whitespace;
    // llama.cpp gives every code point, unassigned or beyond U+10FFFF included, a non-zero flag
    // set, so all of them count as "anything else" for [^\s\p{L}\p{N}].
    return CharClass::other;
}

inline CharClass classify(char32_t cp) noexcept {
    // Most text is ASCII: a table spares it the binary searches.
    static const std::array<CharClass, 128> ascii = [] {
        std::array<CharClass, 128> table{};
        for (char32_t c = 0; c < 128; ++c) table[c] = classify_slow(c);
        return table;
    }();
    return cp < 128 ? ascii[cp] : classify_slow(cp);
}

// Decodes UTF-8 as llama.cpp's unicode_cpts_from_utf8 does: the lead byte alone fixes the length
// and only the continuation bytes' top bits are checked, so overlong forms and surrogates decode
// to whatever their bits say; a lead byte that cannot start a complete sequence becomes U+FFFD
// and decoding resumes at the very next byte.
inline void decode_utf8(std::string_view text, std::vector<char32_t>& out) {
    out.clear();
    out.reserve(text.size());
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const auto continues = [&](std::size_t i) { return i < text.size() && (byte(i) & 0xC0) == 0x80; };
    std::size_t i = 0;
    while (i < text.size()) {
        const unsigned char lead = byte(i);
        if (lead < 0x80) {
            out.push_back(lead);
            i += 1;
        } else if (lead >= 0xC0 && lead < 0xE0 && continues(i + 1)) {
            out.push_back(char32_t(lead & 0x1F) << 6 | char32_t(byte(i + 1) & 0x3F));
            i += 2;
        } else if (lead >= 0xE0 && lead < 0xF0 && continues(i + 1) && continues(i + 2)) {
            out.push_back(char32_t(lead & 0x0F) << 12 | char32_t(byte(i + 1) & 0x3F) << 6 |
                          char32_t(byte(i + 2) & 0x3F));
            i += 3;
        } else if (lead >= 0xF0 && lead < 0xF8 && continues(i + 1) && continues(i + 2) && continues(i + 3)) {
            out.push_back(char32_t(lead & 0x07) << 18 | char32_t(byte(i + 1) & 0x3F) << 12 |
                          char32_t(byte(i + 2) & 0x3F) << 6 | char32_t(byte(i + 3) & 0x3F));
            i += 4;
        } else {
            out.push_back(0xFFFD);
            i += 1;
        }
    }
}

// llama.cpp's unicode_cpt_to_utf8: surrogates are encoded like any code point; above U+10FFFF it
// throws (a four-byte sequence with lead F4..F7 can decode that high), and so does this.
inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp <= 0x10FFFF) {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        throw std::invalid_argument(
            "byte-level BPE: the text decodes to a code point above U+10FFFF, which llama.cpp "
            "cannot re-encode either");
    }
}

// GPT-2's bytes_to_unicode(): the printable bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for
// themselves, and the other 68 bytes, in byte order, take U+0100 onwards (' ' is U+0120 'Ġ',
// '\n' is U+010A 'Ċ'), so that every byte is one visible character.
inline constexpr bool byte_stands_for_itself(unsigned b) noexcept {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

inline constexpr std::array<char16_t, 256> byte_to_code_point = [] {
    std::array<char16_t, 256> table{};
    char16_t next = 0x100;
    for (unsigned b = 0; b < 256; ++b) table[b] = byte_stands_for_itself(b) ? char16_t(b) : next++;
    return table;
}();

// The highest code point of the alphabet, and the inverse map (-1 where no byte maps).
inline constexpr char32_t max_alphabet_code_point = 0x100 + 67;
inline constexpr std::array<std::int16_t, max_alphabet_code_point + 1> code_point_to_byte = [] {
    std::array<std::int16_t, max_alphabet_code_point + 1> table{};
    table.fill(-1);
    for (unsigned b = 0; b < 256; ++b) table[byte_to_code_point[b]] = static_cast<std::int16_t>(b);
    return table;
}();

// Each byte's character, UTF-8 encoded (one or two bytes), ready to append.
struct AlphabetSpelling {
    std::array<char, 2> bytes;
    std::uint8_t size;
};
inline constexpr std::array<AlphabetSpelling, 256> byte_spelling = [] {
    std::array<AlphabetSpelling, 256> table{};
    for (unsigned b = 0; b < 256; ++b) {
        const char16_t cp = byte_to_code_point[b];
        if (cp < 0x80) {
            table[b] = {{static_cast<char>(cp), 0}, 1};
        } else {
            table[b] = {{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))}, 2};
        }
    }
    return table;
}();

// The GPT-2 pattern over one fragment's code points, as llama.cpp's matcher applies it: returns
// the end index of every word, in order. Contractions are matched in lower case only; a single
// ' ' joins the letter, number or other run that follows it; a whitespace run followed by more
// text gives up its last character to the next word (\s+(?!\S)), unless it is one character long.
inline void split_words(std::span<const char32_t> cps, std::vector<CharClass>& classes,
                        std::vector<std::size_t>& ends) {
    const std::size_t n = cps.size();
    classes.resize(n);
    for (std::size_t i = 0; i < n; ++i) classes[i] = classify(cps[i]);
    const auto class_at = [&](std::size_t i) { return i < n ? classes[i] : CharClass::end; };
    const auto cp_at = [&](std::size_t i) { return i < n ? cps[i] : char32_t(0); };

    ends.clear();
    std::size_t pos = 0;
    while (pos < n) {
        const char32_t cp = cps[pos];
        if (cp == U'\'' && pos + 1 < n) {
            const char32_t next = cps[pos + 1];
            if (next == U's' || next == U't' || next == U'm' || next == U'd') {
                ends.push_back(pos += 2);
                continue;
            }
            const char32_t after = cp_at(pos + 2);
            if (pos + 2 < n && ((next == U'r' && after == U'e') || (next == U'v' && after == U'e') ||
                                (next == U'l' && after == U'l'))) {
                ends.push_back(pos += 3);
                continue;
            }
        }
        // " ?\p{L}+", " ?\p{N}+" and " ?[^\s\p{L}\p{N}]+": a run of one class, after an optional ' '.
        const std::size_t run = cp == U' ' ? pos + 1 : pos;
        const CharClass kind = class_at(run);
        if (kind == CharClass::letter || kind == CharClass::number || kind == CharClass::other) {
            std::size_t end = run + 1;
            while (class_at(end) == kind) ++end;
            ends.push_back(pos = end);
            continue;
        }
        // What is left starts with whitespace (a ' ' before whitespace or the end included).
        std::size_t spaces = 0;
        while (class_at(pos + spaces) == CharClass::whitespace) ++spaces;
        const bool more_text = pos + spaces < n;
        ends.push_back(pos += (spaces > 1 && more_text) ? spaces - 1 : spaces);
    }
}

// std::string keys looked up by std::string_view without building a string.
using StringToInt = std::unordered_map<std::string, int, PieceHash, std::equal_to<>>;

}  // namespace detail::byte_pair

class BytePairTokenizer {
public:
    // Throws std::invalid_argument for a vocabulary that is not byte-level BPE with the GPT-2
    // pre-tokenizer, or that is malformed: no pieces, an empty or repeated piece, a merge that is
    // not "left right", scores or types of another length than the pieces, a special id out of
    // range, or a normal piece llama.cpp could not render.
    explicit BytePairTokenizer(Vocabulary vocabulary) : vocabulary_(std::move(vocabulary)) {
        const Vocabulary& v = vocabulary_;
        if (v.model != "gpt2") {
            throw std::invalid_argument("tokenizer.ggml.model = '" + v.model +
                                        "' is not byte-level BPE; BytePairTokenizer needs 'gpt2'");
        }
        // llama.cpp's "default" pre-tokenizer runs three more patterns around the GPT-2 one, so it
        // is not the same thing, and neither is any other name.
        if (v.pre != "gpt-2") {
            throw std::invalid_argument("tokenizer.ggml.pre = '" + v.pre + "' is not supported; supported: gpt-2");
        }
        check_vocabulary_shape(v, "byte-level BPE vocabulary");
        const auto n = v.pieces.size();

        piece_ids_.reserve(n);
        for (std::size_t id = 0; id < n; ++id) {
            const std::string& piece = v.pieces[id];
            if (piece.empty()) throw std::invalid_argument("byte-level BPE piece " + std::to_string(id) + " is empty");
            // llama.cpp asserts that no two ids share a piece.
            if (!piece_ids_.emplace(piece, static_cast<int>(id)).second) {
                throw std::invalid_argument("byte-level BPE piece " + std::to_string(id) + " '" + piece +
                                            "' repeats piece " + std::to_string(piece_ids_.at(piece)));
            }
        }

        // Keyed by the merge line itself: the halves looked up never hold a ' ' (the alphabet
        // spells it 'Ġ'), so "left right" names the pair unambiguously. The first line wins.
        merge_ranks_.reserve(v.merges.size());
        for (std::size_t rank = 0; rank < v.merges.size(); ++rank) {
            const std::string& merge = v.merges[rank];
            const auto space = merge.find(' ');
            if (space == 0 || space == std::string::npos || space + 1 == merge.size() ||
                merge.find(' ', space + 1) != std::string::npos) {
                throw std::invalid_argument("byte-level BPE merge " + std::to_string(rank) + " '" + merge +
                                            "' is not of the form 'left right'");
            }
            merge_ranks_.emplace(merge, static_cast<int>(rank));
            longest_merge_ = std::max(longest_merge_, merge.size());
        }

        // llama.cpp renders every piece once, at load; so does this (and fails here, as it does).
        rendered_.resize(n);
        for (std::size_t id = 0; id < n; ++id) rendered_[id] = render(static_cast<int>(id));

        // User-defined tokens are cut out of a text before anything else.
        user_defined_ = UserDefinedPieces(v, [&](int id) { return v.pieces[static_cast<std::size_t>(id)]; });
    }

    [[nodiscard]] std::size_t vocab_size() const noexcept { return vocabulary_.pieces.size(); }
    [[nodiscard]] std::optional<int> bos() const noexcept { return vocabulary_.bos; }
    [[nodiscard]] std::optional<int> eos() const noexcept { return vocabulary_.eos; }
    [[nodiscard]] const Vocabulary& vocabulary() const noexcept { return vocabulary_; }

    // The ids of text, without BOS or EOS. Throws std::invalid_argument only for bytes that decode
    // to a code point above U+10FFFF (llama.cpp throws there too).
    [[nodiscard]] std::vector<int> encode(std::string_view text) const {
        std::vector<int> ids;
        Scratch scratch;
        for (const auto& [offset, length, id] : user_defined_.split(text)) {
            if (id >= 0) {
                ids.push_back(id);
            } else {
                encode_fragment(text.substr(offset, length), scratch, ids);
            }
        }
        return ids;
    }

    // One token as llama_token_to_piece(special = false) renders it: a normal piece spelled back
    // from the byte alphabet into raw bytes, a user-defined piece verbatim, any other type (control,
    // unknown, byte, unused, undefined) as nothing.
    [[nodiscard]] std::string token_to_piece(int id) const { return rendered(id); }

    // token_to_piece() of every id, concatenated: decode(encode(t)) == t for UTF-8 text t. (This
    // leaves out llama_detokenize's clean-up of spaces before punctuation, which GPT-2's own
    // decoder does not do.)
    [[nodiscard]] std::string decode(std::span<const int> ids) const {
        std::string text;
        for (const int id : ids) text += rendered(id);
        return text;
    }

private:
    // One merged symbol of a word: a byte range of the spelled word, linked to its neighbours.
    struct Symbol {
        std::uint32_t begin;
        std::uint32_t size;  // 0 once merged into the symbol on its left
        int prev;
        int next;
    };

    // A pair that a merge joins; stale once either side has changed (sizes only ever grow, so an
    // unchanged total size with both sides alive means the pair is still the one ranked).
    struct Candidate {
        int rank;
        int left;
        int right;
        std::uint32_t size;
        // std::pop_heap takes the greatest: so the lowest rank comes first, then the leftmost.
        bool operator<(const Candidate& o) const noexcept { return rank != o.rank ? rank > o.rank : left > o.left; }
    };

    // Where the ids of a word already encoded in this call sit in Scratch::cached_ids.
    struct CachedWord {
        std::size_t begin;
        std::size_t size;
    };

    struct Scratch {
        std::vector<char32_t> cps;
        std::vector<detail::byte_pair::CharClass> classes;
        std::vector<std::size_t> ends;
        std::string utf8;
        std::string word;
        std::string key;
        std::vector<Symbol> symbols;
        std::vector<Candidate> heap;
        // Prose repeats its words: each distinct word is merged once per encode() call. Bounded,
        // so that text of endless distinct words costs no more than merging them.
        std::unordered_map<std::string, CachedWord, detail::PieceHash, std::equal_to<>> cache;
        std::vector<int> cached_ids;
    };
    static constexpr std::size_t max_cached_words = std::size_t(1) << 16;

    void encode_fragment(std::string_view text, Scratch& s, std::vector<int>& ids) const {
        namespace bp = detail::byte_pair;
        bp::decode_utf8(text, s.cps);
        bp::split_words(s.cps, s.classes, s.ends);
        std::size_t begin = 0;
        for (const std::size_t end : s.ends) {
            // The word's bytes (re-encoded from the code points, as llama.cpp does, so a bad byte
            // arrives as U+FFFD's three bytes), each spelled as its alphabet character.
            s.utf8.clear();
            for (std::size_t i = begin; i < end; ++i) bp::append_utf8(s.utf8, s.cps[i]);
            begin = end;
            if (const auto hit = s.cache.find(std::string_view(s.utf8)); hit != s.cache.end()) {
                const auto first = s.cached_ids.begin() + static_cast<std::ptrdiff_t>(hit->second.begin);
                ids.insert(ids.end(), first, first + static_cast<std::ptrdiff_t>(hit->second.size));
                continue;
            }
            s.word.clear();
            for (const char c : s.utf8) {
                const auto& spelling = bp::byte_spelling[static_cast<unsigned char>(c)];
                s.word.append(spelling.bytes.data(), spelling.size);
            }
            const std::size_t first = ids.size();
            encode_word(s, ids);
            if (s.cache.size() < max_cached_words) {
                s.cache.emplace(s.utf8, CachedWord{s.cached_ids.size(), ids.size() - first});
                s.cached_ids.insert(s.cached_ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
            }
        }
    }

    [[nodiscard]] int merge_rank(std::string_view word, const Symbol& left, const Symbol& right,
                                 std::string& key) const {
        key.assign(word.substr(left.begin, left.size));
        key.push_back(' ');
        key.append(word.substr(right.begin, right.size));
        const auto it = merge_ranks_.find(std::string_view(key));
        return it == merge_ranks_.end() ? -1 : it->second;
    }

    // Queues the pair (left, right) if a merge joins it; heapify = false only collects it.
    void push_candidate(Scratch& s, int left, int right, bool heapify = true) const {
        if (left < 0 || right < 0) return;
        const Symbol& l = s.symbols[static_cast<std::size_t>(left)];
        const Symbol& r = s.symbols[static_cast<std::size_t>(right)];
        // No merge line is this long: spares hashing ever longer symbols of a long word.
        if (l.size + 1 + r.size > longest_merge_) return;
        const int rank = merge_rank(s.word, l, r, s.key);
        if (rank < 0) return;
        s.heap.push_back({rank, left, right, l.size + r.size});
        if (heapify) std::push_heap(s.heap.begin(), s.heap.end());
    }

    // Merges one spelled word by rank and appends its ids.
    void encode_word(Scratch& s, std::vector<int>& ids) const {
        const std::string_view word = s.word;
        s.symbols.clear();
        s.heap.clear();
        // One symbol per alphabet character (one or two bytes: the lead byte says which).
        for (std::uint32_t i = 0; i < word.size();) {
            const std::uint32_t size = static_cast<unsigned char>(word[i]) < 0x80 ? 1 : 2;
            const int index = static_cast<int>(s.symbols.size());
            s.symbols.push_back({i, size, index - 1, index + 1});
            i += size;
        }
        if (s.symbols.empty()) return;
        s.symbols.back().next = -1;
        for (int i = 1; i < static_cast<int>(s.symbols.size()); ++i) push_candidate(s, i - 1, i, false);
        std::make_heap(s.heap.begin(), s.heap.end());

        while (!s.heap.empty()) {
            std::pop_heap(s.heap.begin(), s.heap.end());
            const Candidate c = s.heap.back();
            s.heap.pop_back();
            Symbol& left = s.symbols[static_cast<std::size_t>(c.left)];
            Symbol& right = s.symbols[static_cast<std::size_t>(c.right)];
            if (left.size == 0 || right.size == 0 || left.size + right.size != c.size) continue;
            left.size += right.size;
            right.size = 0;
            left.next = right.next;
            if (right.next >= 0) s.symbols[static_cast<std::size_t>(right.next)].prev = c.left;
            push_candidate(s, left.prev, c.left);
            push_candidate(s, c.left, left.next);
        }

        for (int i = 0; i >= 0; i = s.symbols[static_cast<std::size_t>(i)].next) {
            const Symbol& symbol = s.symbols[static_cast<std::size_t>(i)];
            const std::string_view text = word.substr(symbol.begin, symbol.size);
            if (const auto it = piece_ids_.find(text); it != piece_ids_.end()) {
                ids.push_back(it->second);
                continue;
            }
            // No piece for the whole symbol: llama.cpp tries each of its bytes as a one-byte
            // piece and silently drops those that are not one (such as a lone half of 'Ġ').
            for (std::size_t b = 0; b < text.size(); ++b) {
                if (const auto it = piece_ids_.find(text.substr(b, 1)); it != piece_ids_.end()) {
                    ids.push_back(it->second);
                }
            }
        }
    }

    [[nodiscard]] const std::string& rendered(int id) const {
        if (id < 0 || std::size_t(id) >= rendered_.size()) {
            throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary of " +
                                    std::to_string(rendered_.size()) + " pieces");
        }
        return rendered_[static_cast<std::size_t>(id)];
    }

    // What llama.cpp's token_to_piece(special = false) gives for id.
    [[nodiscard]] std::string render(int id) const {
        namespace bp = detail::byte_pair;
        const std::string& piece = vocabulary_.pieces[static_cast<std::size_t>(id)];
        switch (vocabulary_.type(id)) {
            case TokenType::user_defined:
                return piece;
            case TokenType::normal:
                break;
            default:
                return {};
        }
        std::string bytes;
        std::vector<char32_t> cps;
        bp::decode_utf8(piece, cps);
        std::string utf8;
        for (const char32_t cp : cps) {
            if (cp <= bp::max_alphabet_code_point && bp::code_point_to_byte[cp] >= 0) {
                bytes.push_back(static_cast<char>(bp::code_point_to_byte[cp]));
                continue;
            }
            // A character outside the alphabet: llama.cpp writes its UTF-8 bytes in hex followed
            // by the whole piece, in brackets.
            utf8.clear();
            bp::append_utf8(utf8, cp);
            static constexpr char hex[] = "0123456789abcdef";
            bytes += "[UNK_BYTE_0x";
            for (const char c : utf8) {
                bytes.push_back(hex[static_cast<unsigned char>(c) >> 4]);
                bytes.push_back(hex[static_cast<unsigned char>(c) & 15]);
            }
            bytes += piece;
            bytes += ']';
        }
        return bytes;
    }

    Vocabulary vocabulary_;
    detail::byte_pair::StringToInt piece_ids_;
    detail::byte_pair::StringToInt merge_ranks_;
    std::size_t longest_merge_ = 0;  // in bytes, the ' ' included
    std::vector<std::string> rendered_;
    UserDefinedPieces user_defined_;
};

}  // namespace multibool::llama
