// The llama2.c tokenizer: the heap-based encoder against a literal transcription of llama2.c's
// quadratic merge loop, hand-derived encodings, the README's token counts, decode round trips,
// and tokenizer files (valid and corrupted) written here, independently of the reader.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llama/tokenizer.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using multibool::FormatError;
using multibool::printable_text;
using multibool::llama::load_tokenizer;
using multibool::llama::Tokenizer;

// A piece table as plain vectors: what the tests build vocabularies and files from.
struct Vocabulary {
    std::vector<std::string> pieces;
    std::vector<float> scores;

    int add(std::string piece, float score) {
        pieces.push_back(std::move(piece));
        scores.push_back(score);
        return static_cast<int>(pieces.size()) - 1;
    }
    [[nodiscard]] Tokenizer tokenizer() const { return Tokenizer(pieces, scores); }
};

// <unk>, <s>, </s> and "<0x00>".."<0xFF>" (ids 0..258), all scored 0 as in tok512.bin.
Vocabulary specials_and_bytes() {
    Vocabulary v;
    v.add("<unk>", 0.0f);
    v.add("<s>", 0.0f);
    v.add("</s>", 0.0f);
    static constexpr char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) v.add(std::string("<0x") + hex[b / 16] + hex[b % 16] + ">", 0.0f);
    return v;
}

// llama2.c's encode(), transcribed loop by loop: sorted-vocabulary lookups (first id of a
// duplicate), byte-at-a-time grouping, then the quadratic merge loop that rescans every pair.
// The only addition is a memo of the lookup of each (left id, right id) concatenation, a pure
// function of the pair, so that 20 KB of text takes a second instead of minutes.
class NaiveEncoder {
public:
    NaiveEncoder(std::vector<std::string> pieces, std::vector<float> scores)
        : pieces_(std::move(pieces)), scores_(std::move(scores)) {
        for (std::size_t id = 0; id < pieces_.size(); ++id) sorted_.emplace_back(pieces_[id], static_cast<int>(id));
        std::stable_sort(sorted_.begin(), sorted_.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        memo_.assign(pieces_.size() * pieces_.size(), unknown);
    }

    std::vector<int> encode(const std::string& text, bool bos, bool eos) {
        std::vector<int> tokens;
        if (bos) tokens.push_back(1);
        if (!text.empty()) tokens.push_back(lookup(" "));
        std::string buffer;
        for (std::size_t c = 0; c < text.size(); ++c) {
            if ((static_cast<unsigned char>(text[c]) & 0xC0) != 0x80) buffer.clear();
            buffer += text[c];
            const bool next_is_continuation =
                c + 1 < text.size() && (static_cast<unsigned char>(text[c + 1]) & 0xC0) == 0x80;
            if (next_is_continuation && buffer.size() < 4) continue;
            const int id = lookup(buffer);
            if (id != -1) {
                tokens.push_back(id);
            } else {
                for (char b : buffer) tokens.push_back(static_cast<unsigned char>(b) + 3);
            }
            buffer.clear();
        }
        while (true) {
            float best_score = -1e10f;
            int best_id = -1;
            int best_idx = -1;
            for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
                const int id = merged(tokens[i], tokens[i + 1]);
                if (id != -1 && scores_[static_cast<std::size_t>(id)] > best_score) {
                    best_score = scores_[static_cast<std::size_t>(id)];
                    best_id = id;
                    best_idx = static_cast<int>(i);
                }
            }
            if (best_idx == -1) break;
            tokens[static_cast<std::size_t>(best_idx)] = best_id;
            tokens.erase(tokens.begin() + best_idx + 1);
        }
        if (eos) tokens.push_back(2);
        return tokens;
    }

private:
    static constexpr int unknown = -2;

    int lookup(const std::string& s) const {
        const auto it = std::lower_bound(sorted_.begin(), sorted_.end(), s,
                                         [](const auto& entry, const std::string& key) { return entry.first < key; });
        return it != sorted_.end() && it->first == s ? it->second : -1;
    }
    int merged(int a, int b) {
        int& slot = memo_[static_cast<std::size_t>(a) * pieces_.size() + static_cast<std::size_t>(b)];
        if (slot == unknown) slot = lookup(pieces_[static_cast<std::size_t>(a)] + pieces_[static_cast<std::size_t>(b)]);
        return slot;
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::vector<std::pair<std::string, int>> sorted_;
    std::vector<int> memo_;
};

// Bytes that exercise the grouping: ASCII, NUL, newline, lead and continuation bytes of 2-, 3-
// and 4-byte characters, and bytes never valid in UTF-8.
const std::string alphabet = std::string("abc \n") + '\0' + "\xC3\xA9\xE2\x82\xAC\x80\xBF\xF0\x9F\x98\xFF";

std::string random_text(std::mt19937_64& rng, std::size_t max_length) {
    std::uniform_int_distribution<std::size_t> length(0, max_length);
    std::uniform_int_distribution<std::size_t> letter(0, alphabet.size() - 1);
    std::uniform_int_distribution<int> any_byte(0, 255);
    std::bernoulli_distribution from_alphabet(0.8);
    std::string text(length(rng), '\0');
    for (auto& c : text) c = from_alphabet(rng) ? alphabet[letter(rng)] : static_cast<char>(any_byte(rng));
    return text;
}

// A random vocabulary over the alphabet: some single characters (always " "), then pieces that
// are concatenations of two earlier ones, scored from a small set so that ties, duplicates (the
// same concatenation twice) and scores at or below llama2.c's -1e10 floor all occur. With quirks,
// concatenations may also involve byte-piece names and "<s>" (llama2.c merges those too).
Vocabulary random_vocabulary(std::mt19937_64& rng, bool quirks) {
    Vocabulary v = specials_and_bytes();
    const std::vector<std::string> characters = {
        "a", "b", "c", "\n", std::string(1, '\0'), "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "a\x80", "\xBF"};
    std::vector<std::string> parts = {" "};
    v.add(" ", -1.0f);
    std::bernoulli_distribution coin(0.6);
    for (const auto& c : characters) {
        if (!coin(rng)) continue;
        v.add(c, 0.0f);
        parts.push_back(c);
    }
    if (quirks) parts.insert(parts.end(), {"<s>", "<0x61>", "<0x0A>", "<0xC3>"});
    const float score_set[] = {0.0f, -1.0f, -1.0f, -2.0f, -3.0f, 1.5f, -1e10f, -2e10f};
    std::uniform_int_distribution<std::size_t> pick_score(0, std::size(score_set) - 1);
    std::uniform_int_distribution<int> merges(0, 40);
    for (int m = merges(rng); m > 0; --m) {
        std::uniform_int_distribution<std::size_t> pick(0, parts.size() - 1);
        std::string piece = parts[pick(rng)] + parts[pick(rng)];
        v.add(piece, score_set[pick_score(rng)]);
        parts.push_back(std::move(piece));
    }
    return v;
}

// Pieces of tokens, joined, as they are stored (no decode rules).
std::string joined_pieces(const Tokenizer& t, const std::vector<int>& tokens) {
    std::string text;
    for (const int id : tokens) text += t.piece(id);
    return text;
}

// No adjacent pair of tokens concatenates to a piece that llama2.c would still merge.
bool no_merge_applies(const Tokenizer& t, const std::vector<int>& tokens) {
    for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
        const auto id = t.find(t.piece(tokens[i]) + t.piece(tokens[i + 1]));
        if (id && t.score(*id) > -1e10f) return false;
    }
    return true;
}

template <class T>
void append_raw(std::string& out, T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out.append(bytes, sizeof(T));
}

// The file layout of shared/assets/README.md, written independently of the reader.
std::string tokenizer_file(std::int32_t max_token_length, const Vocabulary& v) {
    std::string out;
    append_raw(out, max_token_length);
    for (std::size_t i = 0; i < v.pieces.size(); ++i) {
        append_raw(out, v.scores[i]);
        append_raw(out, static_cast<std::int32_t>(v.pieces[i].size()));
        out += v.pieces[i];
    }
    return out;
}

// Byte offset of piece index's record in tokenizer_file(_, v).
std::size_t piece_offset(const Vocabulary& v, std::size_t index) {
    std::size_t offset = 4;
    for (std::size_t i = 0; i < index; ++i) offset += 8 + v.pieces[i].size();
    return offset;
}

// The FormatError load_tokenizer throws for path, or nothing if it accepts the file.
std::optional<FormatError> load_error(const fs::path& path) {
    try {
        static_cast<void>(load_tokenizer(path));
    } catch (const FormatError& e) {
        return e;
    }
    return std::nullopt;
}

// The hand-checked vocabulary: specials and bytes (0..258), then these.
struct HandVocabulary {
    Vocabulary v = specials_and_bytes();
    int space = v.add(" ", 0.0f);                 // 259
    int a = v.add("a", 0.0f);                     // 260
    int b = v.add("b", 0.0f);                     // 261
    int ab = v.add("ab", -1.0f);                  // 262
    int ba = v.add("ba", -1.0f);                  // 263, ties with "ab"
    int bb = v.add("bb", 0.5f);                   // 264
    int space_a = v.add(" a", -3.0f);             // 265
    int e_acute = v.add("\xC3\xA9", 0.0f);        // 266 "é"
    int cc = v.add("cc", -1e10f);                 // 267, at llama2.c's floor: never merged
    int c = v.add("c", 0.0f);                     // 268
    int bos_space = v.add("<s> ", -5.0f);         // 269, BOS takes part in merges
    int ab_again = v.add("ab", 5.0f);             // 270, a duplicate: lookups find 262
    int emoji = v.add("\xF0\x9F\x98\x80", 0.0f);  // 271, a 4-byte piece
};

}  // namespace

TEST_CASE("hand-built vocabulary: encodings derived by hand", "[tokenizer]") {
    const HandVocabulary h;
    REQUIRE(h.ab_again == 270);
    const Tokenizer t = h.v.tokenizer();
    NaiveEncoder naive(h.v.pieces, h.v.scores);
    const auto check = [&](const std::string& text, bool bos, bool eos, const std::vector<int>& expected) {
        CAPTURE(text, bos, eos);
        CHECK(t.encode(text, bos, eos) == expected);
        CHECK(naive.encode(text, bos, eos) == expected);
    };

    // " a b a": pairs " a" -3, "ab" -1, "ba" -1: the tie goes to the leftmost ("ab"); then
    // " "+"ab" and "ab"+"a" are not pieces. (Rightmost would give " a"+"ba".)
    check("aba", false, false, {h.space, h.ab, h.a});
    // " a b b": "bb" 0.5 beats the further-left "ab" -1; then " a" -3; " abb" is not a piece.
    check("abb", false, false, {h.space_a, h.bb});
    // " b a b": "ba" -1 and "ab" -1 tie (the first "ab", 262, not its duplicate 270 scored 5),
    // so the leftmost "ba" merges; " ba" and "bab" are not pieces.
    check("bab", false, false, {h.space, h.ba, h.b});
    // "é" is a piece; "\n" has none: <0x0A> = 10 + 3; "€" E2 82 AC has none: three byte pieces.
    check(
        "\xC3\xA9\n\xE2\x82\xAC"
        "c",
        false, false, {h.space, h.e_acute, 13, 0xE2 + 3, 0x82 + 3, 0xAC + 3, h.c});
    // "cc" scores exactly -1e10, which llama2.c's strict > never accepts.
    check("cc", false, false, {h.space, h.c, h.c});
    // BOS is a merge candidate: "<s>" + " " = "<s> " (-5); then "<s> b" is not a piece.
    check("b", true, true, {h.bos_space, h.b, Tokenizer::eos});
    // Empty text: no dummy prefix.
    check("", false, false, {});
    check("", true, false, {Tokenizer::bos});
    check("", true, true, {Tokenizer::bos, Tokenizer::eos});
    // A continuation byte joins the group of whatever precedes it: "a\xA9" is one group, not a
    // piece, so even "a" falls back to its byte piece (0x61 + 3).
    check("a\xA9", false, false, {h.space, 0x61 + 3, 0xA9 + 3});
    // "é" followed by a stray continuation byte is the group C3 A9 A9, not "é".
    check("\xC3\xA9\xA9", false, false, {h.space, 0xC3 + 3, 0xA9 + 3, 0xA9 + 3});
    // Groups stop at 4 bytes: C3 A9 A9 A9, then A9 alone.
    check("\xC3\xA9\xA9\xA9\xA9", false, false, {h.space, 0xC3 + 3, 0xA9 + 3, 0xA9 + 3, 0xA9 + 3, 0xA9 + 3});
    // A 4-byte character is one group; a fifth continuation byte starts a group of its own.
    check("\xF0\x9F\x98\x80", false, false, {h.space, h.emoji});
    check("\xF0\x9F\x98\x80\x80", false, false, {h.space, h.emoji, 0x80 + 3});
    // A NUL byte is a byte like any other (llama2.c would stop at it); " a" -3 still merges.
    check(std::string("a\0b", 3), false, false, {h.space_a, 0 + 3, h.b});
}

TEST_CASE("tok512.bin: encodings derived by hand from its piece table", "[tokenizer]") {
    if (!multibool::testing::assets_present("tok512.bin")) return;
    const Tokenizer t = load_tokenizer(multibool::examples::assets_dir() / "tok512.bin");
    struct Case {
        std::string text;
        std::vector<int> expected;
    };
    // Pieces: 403 " Once", 407 " upon", 261 " a", 378 " time"; 317 " Lily", 13 <0x0A>;
    // 410 " ", 465 "“", 440 "H", 417 "i", 466 "”" ("Hi", " “", "“H", "i”" are not pieces).
    const auto c = GENERATE(values<Case>({
        {"Once upon a time", {403, 407, 261, 378}},
        {"Lily\n", {317, 13}},
        {"\xE2\x80\x9CHi\xE2\x80\x9D", {410, 465, 440, 417, 466}},
    }));
    std::string listing;
    for (const int id : c.expected) listing += std::to_string(id) + " '" + t.piece(id) + "' ";
    CAPTURE(c.text, c.expected, listing);
    CHECK(t.piece(403) == " Once");
    CHECK(t.piece(13) == "<0x0A>");
    CHECK(t.piece(410) == " ");
    // The hand-derived pieces spell the text (with the dummy prefix, newline as its byte piece) and
    // are final: no adjacent pair merges any further.
    std::string spelled = " " + c.text;
    for (std::size_t p = spelled.find('\n'); p != std::string::npos; p = spelled.find('\n')) {
        spelled.replace(p, 1, "<0x0A>");
    }
    CHECK(joined_pieces(t, c.expected) == spelled);
    CHECK(no_merge_applies(t, c.expected));
    CHECK(t.encode(c.text, false, false) == c.expected);

    std::vector<int> framed = {Tokenizer::bos};
    framed.insert(framed.end(), c.expected.begin(), c.expected.end());
    framed.push_back(Tokenizer::eos);
    CHECK(t.encode(c.text, true, true) == framed);
}

TEST_CASE("the heap-based encoder equals llama2.c's quadratic loop on random vocabularies and bytes", "[tokenizer]") {
    const auto seed = multibool::testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 200; ++round) {
        const Vocabulary v = random_vocabulary(rng, true);
        const Tokenizer t = v.tokenizer();
        NaiveEncoder naive(v.pieces, v.scores);
        for (int sample = 0; sample < 20; ++sample) {
            const std::string text = random_text(rng, sample == 0 && round % 10 == 0 ? 2000 : 60);
            const bool bos = (sample & 1) != 0;
            const bool eos = (sample & 2) != 0;
            CAPTURE(round, sample, text, bos, eos);
            REQUIRE(t.encode(text, bos, eos) == naive.encode(text, bos, eos));
        }
    }
}

TEST_CASE("the heap-based encoder equals llama2.c's quadratic loop on 20 KB of tinystories-valid.txt", "[tokenizer]") {
    if (!multibool::testing::assets_present("tok512.bin") ||
        !multibool::testing::assets_present("tinystories-valid.txt")) {
        return;
    }
    const auto folder = multibool::examples::assets_dir();
    const Tokenizer t = load_tokenizer(folder / "tok512.bin");
    std::vector<std::string> pieces;
    std::vector<float> scores;
    for (int id = 0; id < static_cast<int>(t.vocab_size()); ++id) {
        pieces.push_back(t.piece(id));
        scores.push_back(t.score(id));
    }
    NaiveEncoder naive(pieces, scores);
    const std::string text = multibool::testing::read_file(folder / "tinystories-valid.txt").substr(0, 20000);
    CHECK(t.encode(text, false, false) == naive.encode(text, false, false));
    CHECK(t.encode(text, true, true) == naive.encode(text, true, true));
}

TEST_CASE("whole-file token counts match the assets README", "[tokenizer]") {
    struct Case {
        const char* file;
        std::size_t tokens;
    };
    const auto c = GENERATE(values<Case>({{"tinystories-valid.txt", 45641}, {"tinystories-train.txt", 249968}}));
    CAPTURE(c.file);
    if (!multibool::testing::assets_present("tok512.bin") || !multibool::testing::assets_present(c.file)) return;
    const auto folder = multibool::examples::assets_dir();
    const Tokenizer t = load_tokenizer(folder / "tok512.bin");
    const std::string text = multibool::testing::read_file(folder / c.file);
    const auto tokens = t.encode(text, false, false);
    CHECK(tokens.size() == c.tokens);
    CHECK(std::count(tokens.begin(), tokens.end(), 13) == std::count(text.begin(), text.end(), '\n'));
    CHECK(no_merge_applies(t, tokens));
}

TEST_CASE("decode inverts encode: ' ' + text without BOS, piece(BOS) + text with it", "[tokenizer]") {
    const auto round_trips = [](const Tokenizer& t, const std::string& text) {
        CAPTURE(text);
        const auto plain = t.encode(text, false, false);
        CHECK(t.decode(plain) == (text.empty() ? std::string() : " " + text));
        const auto framed = t.encode(text, true, true);
        CHECK(t.decode(framed) == t.piece(Tokenizer::bos) + text + t.piece(Tokenizer::eos));
    };

    SECTION("random bytes over random vocabularies") {
        const auto seed = multibool::testing::fresh_seed();
        CAPTURE(seed);
        std::mt19937_64 rng(seed);
        for (int round = 0; round < 50; ++round) {
            const Tokenizer t = random_vocabulary(rng, false).tokenizer();
            for (int sample = 0; sample < 20; ++sample) round_trips(t, random_text(rng, 200));
        }
    }
    SECTION("tok512.bin on tinystories-valid.txt and on random bytes") {
        if (!multibool::testing::assets_present("tok512.bin") ||
            !multibool::testing::assets_present("tinystories-valid.txt")) {
            return;
        }
        const auto folder = multibool::examples::assets_dir();
        const Tokenizer t = load_tokenizer(folder / "tok512.bin");
        round_trips(t, multibool::testing::read_file(folder / "tinystories-valid.txt"));
        const auto seed = multibool::testing::fresh_seed();
        CAPTURE(seed);
        std::mt19937_64 rng(seed);
        for (int sample = 0; sample < 200; ++sample) round_trips(t, random_text(rng, 200));
        // Code points tok512.bin has no piece for, and a space after BOS that only llama2.c's
        // strip removes.
        round_trips(t, "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80!\t\x01");
        round_trips(t, " leading space");
    }
}

TEST_CASE("decode(previous, token): the BOS strip and byte pieces", "[tokenizer]") {
    const HandVocabulary h;
    const Tokenizer t = h.v.tokenizer();
    CHECK(t.decode(-1, h.space_a) == " a");
    CHECK(t.decode(h.a, h.space_a) == " a");
    CHECK(t.decode(Tokenizer::bos, h.space_a) == "a");
    CHECK(t.decode(Tokenizer::bos, h.space).empty());
    CHECK(t.decode(Tokenizer::bos, h.a) == "a");
    CHECK(t.decode(-1, 0x0A + 3) == "\n");
    CHECK(t.decode(-1, 0xFF + 3) == "\xFF");
    CHECK(t.decode(-1, 0 + 3) == std::string_view("\0", 1));
    CHECK(t.decode(-1, Tokenizer::bos) == "<s>");
    CHECK(t.decode(-1, Tokenizer::eos) == "</s>");
    CHECK(t.decode(-1, 0) == "<unk>");
    // The strip applies only after BOS, never to the first token of a sequence.
    const std::vector<int> tokens = {h.space_a, Tokenizer::bos, h.space_a, h.e_acute, 0xA9 + 3};
    CHECK(t.decode(tokens) == " a<s>a\xC3\xA9\xA9");
    CHECK(t.decode(std::vector<int>{}).empty());
}

TEST_CASE("Tokenizer rejects inconsistent tables with std::invalid_argument", "[tokenizer]") {
    const Vocabulary good = HandVocabulary{}.v;
    REQUIRE_NOTHROW(good.tokenizer());
    SECTION("scores and pieces differ in number") {
        auto scores = good.scores;
        scores.pop_back();
        REQUIRE_THROWS_WITH(Tokenizer(good.pieces, scores), Contains("272 pieces but 271 scores"));
    }
    SECTION("fewer than 259 pieces") {
        Vocabulary v = specials_and_bytes();
        v.pieces.resize(258);
        v.scores.resize(258);
        v.pieces.back() = " ";
        REQUIRE_THROWS_WITH(v.tokenizer(), Contains("258 pieces") && Contains("259"));
    }
    SECTION("a non-finite score") {
        Vocabulary v = good;
        v.scores[262] = std::numeric_limits<float>::quiet_NaN();
        REQUIRE_THROWS_WITH(v.tokenizer(), Contains("piece 262") && Contains("finite"));
        v.scores[262] = -std::numeric_limits<float>::infinity();
        REQUIRE_THROWS_AS(v.tokenizer(), std::invalid_argument);
    }
    SECTION("no \" \" piece") {
        Vocabulary v = good;
        v.pieces[259] = "  ";
        REQUIRE_THROWS_WITH(v.tokenizer(), Contains("\" \" piece"));
    }
}

TEST_CASE("ids outside the vocabulary are std::out_of_range naming the id and the size", "[tokenizer]") {
    const Tokenizer t = HandVocabulary{}.v.tokenizer();
    CHECK(t.vocab_size() == 272);
    CHECK(t.max_token_length() == 6);
    const int bad = GENERATE(-1, 272, 100000);
    CAPTURE(bad);
    REQUIRE_THROWS_WITH(t.piece(bad), Contains(std::to_string(bad)) && Contains("272"));
    REQUIRE_THROWS_AS(t.score(bad), std::out_of_range);
    REQUIRE_THROWS_AS(t.decode(Tokenizer::bos, bad), std::out_of_range);
    REQUIRE_THROWS_AS(t.decode(std::vector<int>{3, bad}), std::out_of_range);
}

TEST_CASE("tok512.bin loads with the README's specials and byte pieces", "[tokenizer]") {
    if (!multibool::testing::assets_present("tok512.bin")) return;
    const Tokenizer t = load_tokenizer(multibool::examples::assets_dir() / "tok512.bin");
    CHECK(t.vocab_size() == 512);
    CHECK(t.max_token_length() == 7);
    CHECK(t.piece(0) == "<unk>");
    CHECK(t.piece(Tokenizer::bos) == "\n<s>\n");
    CHECK(t.piece(Tokenizer::eos) == "\n</s>\n");
    for (int b = 0; b < 256; ++b) {
        CAPTURE(b);
        CHECK(t.decode(-1, b + 3) == std::string(1, static_cast<char>(b)));
    }
    CHECK(t.piece(259) == " t");
    CHECK(t.score(260) == -1.0f);
    CHECK(t.find(" ") == 410);
}

TEST_CASE("a written tokenizer file loads back exactly", "[tokenizer]") {
    const auto seed = multibool::testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Vocabulary v = random_vocabulary(rng, true);
    std::size_t longest = 0;
    for (const auto& p : v.pieces) longest = std::max(longest, p.size());
    multibool::testing::TempDir dir;
    const Tokenizer t = load_tokenizer(
        multibool::testing::write_file(dir.path() / "tok.bin", tokenizer_file(static_cast<std::int32_t>(longest), v)));
    REQUIRE(t.vocab_size() == v.pieces.size());
    for (std::size_t id = 0; id < v.pieces.size(); ++id) {
        CHECK(t.piece(static_cast<int>(id)) == v.pieces[id]);
        CHECK(t.score(static_cast<int>(id)) == v.scores[id]);
    }
}

TEST_CASE("malformed tokenizer files are FormatErrors naming the field", "[tokenizer]") {
    const Vocabulary v = HandVocabulary{}.v;  // longest piece: 6 bytes
    const std::string good = tokenizer_file(6, v);
    multibool::testing::TempDir dir;
    const auto expect_error = [&](const std::string& bytes, const std::string& field, const std::string& found) {
        CAPTURE(field, found);
        const auto path = multibool::testing::write_file(dir.path() / "bad.bin", bytes);
        REQUIRE_THROWS_AS(load_tokenizer(path), FormatError);
        const auto error = load_error(path);
        REQUIRE(error);
        CHECK(error->field() == field);
        CHECK_THAT(error->what(), Contains(path.string()) && Contains("field '" + field + "'") && Contains(found));
    };
    const auto with_int32_at = [&](std::size_t offset, std::int32_t value) {
        std::string bytes = good;
        std::memcpy(bytes.data() + offset, &value, 4);
        return bytes;
    };

    REQUIRE_NOTHROW(load_tokenizer(multibool::testing::write_file(dir.path() / "good.bin", good)));
    SECTION("empty file") { expect_error("", "max_token_length", "truncated after 0"); }
    SECTION("truncated inside max_token_length") { expect_error(good.substr(0, 3), "max_token_length", "after 3"); }
    SECTION("bad max_token_length") {
        const std::int32_t value = GENERATE(0, -1, 65537, std::numeric_limits<std::int32_t>::min());
        expect_error(with_int32_at(0, value), "max_token_length", std::to_string(value));
    }
    SECTION("truncated mid piece") {
        const std::size_t at = piece_offset(v, 17);
        expect_error(good.substr(0, at + 2), "piece 17 score", "after 2");
        expect_error(good.substr(0, at + 6), "piece 17 length", "after 2");
        expect_error(good.substr(0, at + 10), "piece 17 bytes", "6 bytes");  // "<0x0E>" cut after 2
    }
    SECTION("negative length") { expect_error(with_int32_at(piece_offset(v, 17) + 4, -1), "piece 17 length", "-1"); }
    SECTION("length above max_token_length") {
        expect_error(with_int32_at(piece_offset(v, 17) + 4, 7), "piece 17 length", "7");
        expect_error(tokenizer_file(5, v), "piece 3 length", "6");  // "<0x00>" is 6 bytes
    }
    SECTION("non-finite score") {
        const float value = GENERATE(std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity());
        std::string bytes = good;
        std::memcpy(bytes.data() + piece_offset(v, 17), &value, 4);
        expect_error(bytes, "piece 17 score", "finite");
    }
    SECTION("too few pieces") {
        expect_error(good.substr(0, piece_offset(v, 258)), "pieces", "258 pieces, at least 259");
        expect_error(good.substr(0, 4), "pieces", "0 pieces, at least 259");
    }
    SECTION("no \" \" piece") {
        Vocabulary no_space = v;
        no_space.pieces[259] = "_";
        expect_error(tokenizer_file(6, no_space), "pieces", "\" \" piece");
    }
    SECTION("a byte-fallback id that is not its byte piece") {
        Vocabulary swapped = v;
        std::swap(swapped.pieces[3 + 'a'], swapped.pieces[3 + 'b']);
        expect_error(tokenizer_file(6, swapped), "pieces", "byte piece of 97");
    }
    SECTION("a quoted piece of 64 KiB of control bytes is escaped and cut short") {
        Vocabulary hostile = v;
        hostile.pieces[3] = "\x1b[2J" + std::string(65530, '\x07');  // clear-screen, then bells
        expect_error(tokenizer_file(65536, hostile), "pieces", "\\x1b[2J\\x07\\x07");
        const auto error = load_error(dir.path() / "bad.bin");
        CHECK_THAT(error->what(), Contains("more bytes"));
        CHECK(std::string_view(error->what()).find('\x07') == std::string_view::npos);
        CHECK(std::string_view(error->what()).find('\x1b') == std::string_view::npos);
        CHECK(std::string_view(error->what()).size() < 1024);
    }
}

TEST_CASE("printable_text keeps UTF-8, escapes control and stray bytes, and caps the length", "[tokenizer]") {
    CHECK(printable_text("caf\xC3\xA9 \xF0\x9F\x98\x80") == "caf\xC3\xA9 \xF0\x9F\x98\x80");
    CHECK(printable_text(std::string("a\0b\n\x7f", 5)) == "a\\x00b\\x0a\\x7f");
    // A lone continuation byte, a lead byte cut short, and an invalid lead byte.
    CHECK(printable_text("\x80x\xC3\xFF") == "\\x80x\\xc3\\xff");
    CHECK(printable_text(std::string(10, 'z'), 4) == "zzzz... (6 more bytes)");
}

TEST_CASE("a missing tokenizer file is an error naming the path", "[tokenizer]") {
    multibool::testing::TempDir dir;
    const auto path = dir.path() / "absent.bin";
    REQUIRE_THROWS_WITH(load_tokenizer(path), Contains(path.string()));
}
