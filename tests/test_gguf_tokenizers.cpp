// The tokenizers of GGUF vocabularies against llama.cpp: hand-worked encodings on small
// vocabularies built here, and llama.cpp's own test vectors (ggml-vocab-*.gguf with .inp texts
// separated by "\n__ggml_vocab_test__\n" and .out lines of ids, tokenized without BOS).
#include <cstddef>
#include <filesystem>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llama/byte_pair_tokenizer.hpp"
#include "llama/gguf_vocabulary.hpp"
#include "llama/sentencepiece_tokenizer.hpp"
#include "llama/tokenizer.hpp"
#include "llama/vocabulary.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;

// llama.cpp's test-tokenizer-0 cases: the .inp texts split at the separator (a trailing
// separator ends the last text), each with the ids of its .out line.
struct VocabularyVector {
    std::string text;
    std::vector<int> ids;
};

std::vector<VocabularyVector> read_vocabulary_vectors(const fs::path& vocabulary_file) {
    const std::string inputs = multibool::testing::read_file(vocabulary_file.string() + ".inp");
    const std::string outputs = multibool::testing::read_file(vocabulary_file.string() + ".out");
    constexpr std::string_view separator = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (std::size_t at = 0; at < inputs.size();) {
        const std::size_t next = inputs.find(separator, at);
        if (next == std::string::npos) {
            texts.push_back(inputs.substr(at));
            break;
        }
        texts.push_back(inputs.substr(at, next - at));
        at = next + separator.size();
    }
    std::vector<std::vector<int>> ids;
    std::istringstream lines(outputs);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream numbers(line);
        std::vector<int> line_ids;
        for (int id; numbers >> id;) line_ids.push_back(id);
        ids.push_back(std::move(line_ids));
    }
    REQUIRE(texts.size() == ids.size());
    std::vector<VocabularyVector> vectors;
    for (std::size_t i = 0; i < texts.size(); ++i) vectors.push_back({std::move(texts[i]), std::move(ids[i])});
    return vectors;
}

std::string ids_text(const std::vector<int>& ids) {
    std::string text;
    for (const int id : ids) {
        if (!text.empty()) text += ' ';
        text += std::to_string(id);
    }
    return text;
}

// llama.cpp's 46 test-tokenizer-0 vectors for the vocabulary at path: each text gives exactly the
// expected ids (a failure names the text) and, with decodes_back, decodes back to itself.
template <class AnyTokenizer>
void check_llama_cpp_vectors(const AnyTokenizer& t, const fs::path& path, bool decodes_back) {
    const std::vector<VocabularyVector> vectors = read_vocabulary_vectors(path);
    CHECK(vectors.size() == 46);
    std::size_t passed = 0;
    for (const auto& [text, expected] : vectors) {
        const std::vector<int> ids = t.encode(text);
        INFO("text \"" << text << "\": expected [" << ids_text(expected) << "], got [" << ids_text(ids) << "]");
        CHECK(ids == expected);
        if (decodes_back) CHECK(t.decode(ids) == text);
        passed += ids == expected ? 1 : 0;
    }
    CHECK(passed == vectors.size());
}

// ---------------------------------------------------------------------------------------------
// SentencePiece
// ---------------------------------------------------------------------------------------------

using multibool::llama::SentencePieceTokenizer;
using multibool::llama::TokenType;
using SpmVocabulary = multibool::llama::Vocabulary;

constexpr std::string_view spm_space = "\xE2\x96\x81";  // "▁"

// "▁" for every ' ' in text: how SentencePiece pieces spell spaces.
std::string spm(std::string_view text) {
    std::string out;
    for (const char c : text) {
        if (c == ' ') {
            out += spm_space;
        } else {
            out += c;
        }
    }
    return out;
}

// <unk> (0, unknown), <s> (1, control, BOS), </s> (2, control, EOS), then the given normal
// pieces (written with ' ' for "▁") at ids 3, 4, ...; no byte pieces unless added.
SpmVocabulary spm_vocabulary(const std::vector<std::pair<std::string, float>>& pieces, bool add_space_prefix = false) {
    SpmVocabulary v;
    v.model = "llama";
    v.pieces = {"<unk>", "<s>", "</s>"};
    v.scores = {0.0f, 0.0f, 0.0f};
    v.types = {TokenType::unknown, TokenType::control, TokenType::control};
    v.bos = 1;
    v.eos = 2;
    v.unknown = 0;
    v.add_space_prefix = add_space_prefix;
    for (const auto& [piece, score] : pieces) {
        v.pieces.push_back(spm(piece));
        v.scores.push_back(score);
        v.types.push_back(TokenType::normal);
    }
    return v;
}

int spm_add(SpmVocabulary& v, std::string piece, float score, TokenType type) {
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(type);
    return static_cast<int>(v.pieces.size()) - 1;
}

// The ids of the given pieces (written with ' ' for "▁").
std::vector<int> spm_ids(const SentencePieceTokenizer& t, const std::vector<std::string>& pieces) {
    std::vector<int> ids;
    for (const auto& piece : pieces) {
        const auto id = t.find(spm(piece));
        REQUIRE(id);
        ids.push_back(*id);
    }
    return ids;
}

TEST_CASE("SentencePiece merges the highest-scoring pair first, the leftmost on ties", "[gguf_tokenizer]") {
    SECTION("score decides, wherever the pair is") {
        const SentencePieceTokenizer t(spm_vocabulary({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -2}, {"bc", -1}}));
        CHECK(t.encode("abc") == spm_ids(t, {"a", "bc"}));
        const SentencePieceTokenizer u(spm_vocabulary({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -1}, {"bc", -2}}));
        CHECK(u.encode("abc") == spm_ids(u, {"ab", "c"}));
        // "ba" (-0.5) beats both "ab" (-1) although it is not leftmost; nothing joins after.
        const SentencePieceTokenizer w(spm_vocabulary({{"a", -1}, {"b", -1}, {"ab", -1}, {"ba", -0.5f}}));
        CHECK(w.encode("abab") == spm_ids(w, {"a", "ba", "b"}));
    }
    SECTION("equal scores: the leftmost pair") {
        const SentencePieceTokenizer t(spm_vocabulary({{"a", -1}, {"aa", -1}}));
        CHECK(t.encode("aaa") == spm_ids(t, {"aa", "a"}));
        CHECK(t.encode("aaaa") == spm_ids(t, {"aa", "aa"}));
        const SentencePieceTokenizer u(spm_vocabulary({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -1}, {"bc", -1}}));
        CHECK(u.encode("abc") == spm_ids(u, {"ab", "c"}));
    }
    SECTION("merged symbols merge again; a piece no chain of pieces reaches is never formed") {
        const SentencePieceTokenizer t(spm_vocabulary({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -1}, {"abc", -2}}));
        CHECK(t.encode("abc") == spm_ids(t, {"abc"}));
        const SentencePieceTokenizer u(spm_vocabulary({{"a", -1}, {"b", -1}, {"c", -1}, {"abc", 0}}));
        CHECK(u.encode("abc") == spm_ids(u, {"a", "b", "c"}));
    }
    SECTION("UTF-8 characters are the starting symbols") {
        const SentencePieceTokenizer t(spm_vocabulary({{"\xC3\xA9", -1}, {"t", -1}, {"\xC3\xA9t\xC3\xA9", -3}}));
        CHECK(t.encode("\xC3\xA9t\xC3\xA9") == spm_ids(t, {"\xC3\xA9", "t", "\xC3\xA9"}));  // "ét" is no piece
    }
}

TEST_CASE("SentencePiece falls back to byte pieces, then one-byte pieces, then the unknown id", "[gguf_tokenizer]") {
    SpmVocabulary v = spm_vocabulary({{"a", -1}, {"b", -1}, {"ab", -1}});
    const int c3 = spm_add(v, "<0xC3>", 0, TokenType::byte);
    const int a9 = spm_add(v, "<0xA9>", 0, TokenType::byte);
    const int e2 = spm_add(v, "<0xE2>", 0, TokenType::byte);
    const int bc = spm_add(v, "\xBC", -1, TokenType::normal);  // a one-byte piece, no "<0xBC>"
    const SentencePieceTokenizer t(v);
    const int a = *t.find("a");
    const int b = *t.find("b");

    CHECK(t.encode("\xC3\xA9") == std::vector<int>{c3, a9});  // "é": no piece, two byte pieces
    CHECK(t.encode("\xC3\xBC") == std::vector<int>{c3, bc});  // "ü": byte piece, one-byte piece
    CHECK(t.encode("a\xC3\xB6"
                   "b") == std::vector<int>{a, c3, 0, b});  // "ö": 0xB6 has no piece: <unk>
    // llama.cpp takes 0xE2 as the start of a 3-byte character whatever follows, so "ab" is in the
    // symbol "\xE2" "ab" and is not merged: three fallback ids.
    CHECK(t.encode("\xE2"
                   "ab") == std::vector<int>{e2, a, b});
    CHECK(t.encode("ab\xE2") == std::vector<int>{*t.find("ab"), e2});  // truncated at the end
    // The symbol "\xE2\na" swallows a newline: no "<0x0A>" and no "\n" piece here, so <unk>.
    CHECK(t.encode("\xE2\nab") == std::vector<int>{e2, 0, a, b});

    v.unknown.reset();
    const SentencePieceTokenizer no_unknown(v);
    CHECK_THROWS_WITH(no_unknown.encode("\xC3\xB6"), Catch::Matchers::Contains("byte 0xB6"));
}

TEST_CASE("SentencePiece merges across a newline only when some piece holds one", "[gguf_tokenizer]") {
    const SentencePieceTokenizer t(spm_vocabulary({{"a", -1}, {"\n", -1}, {"a\n", -2}}));
    CHECK(t.encode("a\na\n\n") == spm_ids(t, {"a\n", "a\n", "\n"}));
    const SentencePieceTokenizer u(spm_vocabulary({{"a", -1}, {"\n", -1}, {"aa", -2}}));
    CHECK(u.encode("aa\naaa\n") == spm_ids(u, {"aa", "\n", "aa", "a", "\n"}));
}

TEST_CASE("SentencePiece spaces: '▁', and the space prefix only before non-empty text", "[gguf_tokenizer]") {
    const std::vector<std::pair<std::string, float>> pieces = {{" ", -3}, {"a", -2}, {"b", -2}, {" a", -1}, {" b", -1}};
    const SentencePieceTokenizer prefixed(spm_vocabulary(pieces, true));
    const SentencePieceTokenizer plain(spm_vocabulary(pieces, false));

    CHECK(prefixed.encode("a b") == spm_ids(prefixed, {" a", " b"}));
    CHECK(plain.encode("a b") == spm_ids(plain, {"a", " b"}));
    CHECK(prefixed.encode(" a") == spm_ids(prefixed, {" ", " a"}));
    CHECK(plain.encode(" a") == spm_ids(plain, {" a"}));
    CHECK(prefixed.encode(" ") == spm_ids(prefixed, {" ", " "}));
    CHECK(prefixed.encode("").empty());
    CHECK(plain.encode("").empty());
    // A literal "▁" in the text is a space too.
    CHECK(plain.encode(spm(" a")) == spm_ids(plain, {" a"}));
}

TEST_CASE("SentencePiece splits at user-defined pieces, not at control ones", "[gguf_tokenizer]") {
    SpmVocabulary v = spm_vocabulary({{" ", -3},
                                      {"a", -2},
                                      {"b", -2},
                                      {" a", -1},
                                      {" b", -1},
                                      {"<", -2},
                                      {">", -2},
                                      {"s", -2},
                                      {"u", -2},
                                      {"d", -2}},
                                     true);
    const int ud = spm_add(v, "<ud>", 0, TokenType::user_defined);
    const SentencePieceTokenizer t(v);
    // After a user-defined piece the next text gets the space prefix again, as in llama.cpp.
    std::vector<int> expected = spm_ids(t, {" a"});
    expected.push_back(ud);
    for (const int id : spm_ids(t, {" b"})) expected.push_back(id);
    CHECK(t.encode("a<ud>b") == expected);
    CHECK(t.encode("<ud>") == std::vector<int>{ud});
    // "<s>" is BOS's piece, but control pieces are text when parse_special is off.
    CHECK(t.encode("<s>") == spm_ids(t, {" ", "<", "s", ">"}));
}

TEST_CASE("SentencePiece token_to_piece and decode render pieces as llama.cpp does", "[gguf_tokenizer]") {
    SpmVocabulary v = spm_vocabulary({{" ", -3}, {"a", -2}, {"b", -2}, {" a", -1}, {" b", -1}, {"a b", -4}}, true);
    const int c3 = spm_add(v, "<0xC3>", 0, TokenType::byte);
    const int a9 = spm_add(v, "<0xA9>", 0, TokenType::byte);
    const int ud = spm_add(v, spm("<u d>"), 0, TokenType::user_defined);
    const int unused = spm_add(v, "unused", 0, TokenType::unused);
    const SentencePieceTokenizer t(v);

    CHECK(t.token_to_piece(*t.find(spm(" a"))) == " a");
    CHECK(t.token_to_piece(*t.find(spm("a b"))) == "a b");
    CHECK(t.token_to_piece(c3) == "\xC3");
    CHECK(t.token_to_piece(0).empty());  // unknown
    CHECK(t.token_to_piece(1).empty());  // control (BOS)
    CHECK(t.token_to_piece(unused).empty());
    CHECK(t.token_to_piece(ud) == spm("<u d>"));  // user-defined: verbatim, "▁" kept
    CHECK_THROWS_AS(t.token_to_piece(-1), std::out_of_range);
    CHECK_THROWS_AS(t.token_to_piece(static_cast<int>(t.vocab_size())), std::out_of_range);

    // The first piece loses one leading space (the prefix encode added), unless it is BOS.
    CHECK(t.decode(t.encode("a b")) == "a b");
    CHECK(t.decode(t.encode(" a")) == " a");
    CHECK(t.decode(t.encode("\xC3\xA9 a")) == "\xC3\xA9 a");
    CHECK(t.decode(std::vector<int>{c3, a9}) == "\xC3\xA9");
    std::vector<int> with_bos = {1};
    for (const int id : t.encode("a b")) with_bos.push_back(id);
    with_bos.push_back(2);
    CHECK(t.decode(with_bos) == " a b");
    CHECK(t.decode(std::vector<int>{}).empty());

    v.add_space_prefix = false;
    const SentencePieceTokenizer plain(v);
    CHECK(plain.decode(plain.encode(" a b")) == " a b");
}

TEST_CASE("SentencePiece refuses inconsistent vocabularies, naming the problem", "[gguf_tokenizer]") {
    using Catch::Matchers::Contains;
    const SpmVocabulary good = spm_vocabulary({{"a", -1}});
    const SentencePieceTokenizer t(good);
    CHECK(t.vocab_size() == 4);
    CHECK(t.bos() == std::optional<int>(1));
    CHECK(t.eos() == std::optional<int>(2));
    CHECK(t.vocabulary().pieces == good.pieces);

    SpmVocabulary v = good;
    v.pieces.clear();
    v.scores.clear();
    v.types.clear();
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("no pieces"));
    v = good;
    v.scores.pop_back();
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("3 scores for 4 pieces"));
    v = good;
    v.types.push_back(TokenType::normal);
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("5 token types for 4 pieces"));
    v = good;
    v.bos = 4;
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("bos id 4"));
    v = good;
    v.eos = -1;
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("eos id -1"));
    v = good;
    v.unknown = 9;
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("unknown id 9"));
    v = good;
    v.pieces[3] = "</s>";
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("\"</s>\" appears twice, as ids 2 and 3"));
    v = good;
    v.types[3] = TokenType::byte;
    CHECK_THROWS_WITH(SentencePieceTokenizer(v), Contains("byte token 3"));

    // As in llama.cpp: no scores means all 0, no types means all normal.
    v = good;
    v.scores.clear();
    v.types.clear();
    const SentencePieceTokenizer bare(v);
    CHECK(bare.encode("a") == std::vector<int>{3});
    CHECK(bare.token_to_piece(1) == "<s>");
}

TEST_CASE("SentencePiece passes llama.cpp's test vectors for ggml-vocab-llama-spm.gguf", "[gguf_tokenizer]") {
    const fs::path file = fs::path("gguf") / "ggml-vocab-llama-spm.gguf";
    if (!multibool::testing::assets_present(file)) return;
    const fs::path path = multibool::examples::assets_dir() / file;
    const SentencePieceTokenizer t(multibool::llama::load_vocabulary(path));
    CHECK(t.vocab_size() == 32000);
    check_llama_cpp_vectors(t, path, false);
}

TEST_CASE("SentencePiece on stories260K's GGUF vocabulary equals llama2.c's encoder on tinystories",
          "[gguf_tokenizer]") {
    const fs::path file = fs::path("gguf") / "stories260K-f32.gguf";
    if (!multibool::testing::assets_present(file) || !multibool::testing::assets_present("tok512.bin") ||
        !multibool::testing::assets_present("tinystories-train.txt")) {
        return;
    }
    const fs::path assets = multibool::examples::assets_dir();
    const SentencePieceTokenizer spm_tokenizer(multibool::llama::load_vocabulary(assets / file));
    const auto llama2c = multibool::llama::load_tokenizer(assets / "tok512.bin");
    const std::string text = multibool::testing::read_file(assets / "tinystories-train.txt");
    // Same ids (the GGUF spells spaces "▁" where tok512.bin has ' '); the same merge rule, and
    // no piece joins a character llama2.c had to spell in bytes.
    const std::vector<int> ids = spm_tokenizer.encode(text);
    CHECK(ids == llama2c.encode(text, false, false));
    CHECK(spm_tokenizer.decode(ids) == text);
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE
// ---------------------------------------------------------------------------------------------

using multibool::llama::BytePairTokenizer;
using BpeVocabulary = multibool::llama::Vocabulary;
using BpeTokenType = multibool::llama::TokenType;

// GPT-2's alphabet spelling of raw bytes: what byte-level BPE pieces are written in.
std::string bpe_spell(std::string_view bytes) {
    std::string spelled;
    for (const char c : bytes) {
        const char16_t cp = multibool::llama::detail::byte_pair::byte_to_code_point[static_cast<unsigned char>(c)];
        if (cp < 0x80) {
            spelled.push_back(static_cast<char>(cp));
        } else {
            spelled.push_back(static_cast<char>(0xC0 | (cp >> 6)));
            spelled.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
    }
    return spelled;
}

// A "gpt2" / "gpt-2" vocabulary of the given pieces (raw bytes, spelled here) and merges (pairs of
// raw byte strings, highest priority first), all normal; types left empty.
BpeVocabulary bpe_vocabulary(const std::vector<std::string>& pieces,
                             const std::vector<std::pair<std::string, std::string>>& merges) {
    BpeVocabulary v;
    v.model = "gpt2";
    v.pre = "gpt-2";
    v.add_bos = false;
    v.add_space_prefix = false;
    for (const auto& piece : pieces) v.pieces.push_back(bpe_spell(piece));
    for (const auto& [left, right] : merges) v.merges.push_back(bpe_spell(left) + " " + bpe_spell(right));
    return v;
}

// The id of a raw-byte piece in a vocabulary built by bpe_vocabulary.
int bpe_id(const BpeVocabulary& v, std::string_view piece) {
    const std::string spelled = bpe_spell(piece);
    for (std::size_t id = 0; id < v.pieces.size(); ++id) {
        if (v.pieces[id] == spelled) return static_cast<int>(id);
    }
    FAIL("no piece '" << std::string(piece) << "'");
    return -1;
}

std::vector<int> bpe_ids(const BpeVocabulary& v, const std::vector<std::string>& pieces) {
    std::vector<int> ids;
    for (const auto& piece : pieces) ids.push_back(bpe_id(v, piece));
    return ids;
}

// The words the GPT-2 pattern splits text into.
std::vector<std::string> bpe_words(std::string_view text) {
    namespace bp = multibool::llama::detail::byte_pair;
    std::vector<char32_t> cps;
    std::vector<bp::CharClass> classes;
    std::vector<std::size_t> ends;
    bp::decode_utf8(text, cps);
    bp::split_words(cps, classes, ends);
    std::vector<std::string> words;
    std::size_t begin = 0;
    for (const std::size_t end : ends) {
        std::string word;
        for (std::size_t i = begin; i < end; ++i) bp::append_utf8(word, cps[i]);
        words.push_back(std::move(word));
        begin = end;
    }
    return words;
}

using Words = std::vector<std::string>;

TEST_CASE("BytePair alphabet: printable bytes stand for themselves, the others take U+0100 on", "[gguf_tokenizer]") {
    CHECK(bpe_spell(" ") == "\xC4\xA0");                   // 'Ġ' U+0120
    CHECK(bpe_spell("\n") == "\xC4\x8A");                  // 'Ċ' U+010A
    CHECK(bpe_spell("\t") == "\xC4\x89");                  // 'ĉ' U+0109
    CHECK(bpe_spell(std::string(1, '\0')) == "\xC4\x80");  // 'Ā' U+0100
    CHECK(bpe_spell("\x7F") == "\xC4\xA1");                // 'ġ' U+0121, the first after the 33 bytes 0x00..0x20
    CHECK(bpe_spell("\xA0") == "\xC5\x82");                // 'ł' U+0142, the last of 0x7F..0xA0
    CHECK(bpe_spell("\xAD") == "\xC5\x83");                // 'Ń' U+0143, the soft hyphen, last of all
    CHECK(bpe_spell("!~") == "!~");
    CHECK(bpe_spell("\xA1\xAC\xAE\xFF") == "\xC2\xA1\xC2\xAC\xC2\xAE\xC3\xBF");  // '¡' '¬' '®' 'ÿ'

    // A vocabulary of the 256 one-byte pieces: each byte encodes to its piece, and back.
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
    const BpeVocabulary v = bpe_vocabulary(bytes, {});
    const BytePairTokenizer t(v);
    CHECK(t.encode(" ") == std::vector<int>{' '});
    CHECK(v.pieces[' '] == "\xC4\xA0");
    CHECK(v.pieces['\n'] == "\xC4\x8A");
    for (int b = 0; b < 256; ++b) {
        INFO("byte " << b);
        CHECK(t.token_to_piece(b) == bytes[static_cast<std::size_t>(b)]);
    }
    // Bytes that are not UTF-8 go through U+FFFD first, as in llama.cpp.
    CHECK(t.encode("\xFF") == std::vector<int>{0xEF, 0xBF, 0xBD});
    CHECK(t.encode("a\x80\x62") == std::vector<int>{'a', 0xEF, 0xBF, 0xBD, 'b'});
    CHECK(t.decode(t.encode("\xC3\xA9t\xC3\xA9")) == "\xC3\xA9t\xC3\xA9");
}

TEST_CASE("BytePair pre-tokenizer splits as the GPT-2 pattern does", "[gguf_tokenizer]") {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+, by hand:
    // the two spaces before "x" give up the second to " x"; "\n\n " before "123" gives up its ' '.
    CHECK(bpe_words("Hello world's  x\n\n 123") == Words{"Hello", " world", "'s", " ", " x", "\n\n", " 123"});
    // Contractions in lower case only; an upper-case one is punctuation, then letters.
    CHECK(bpe_words("I've 'RE we'd") == Words{"I", "'ve", " '", "RE", " we", "'d"});
    CHECK(bpe_words("it'll'm's't're") == Words{"it", "'ll", "'m", "'s", "'t", "'re"});
    CHECK(bpe_words("'") == Words{"'"});
    CHECK(bpe_words("'x") == Words{"'", "x"});
    // Letters, numbers and the rest are separate runs, each taking at most one leading ' '.
    CHECK(bpe_words("3.14km  !!?") == Words{"3", ".", "14", "km", " ", " !!?"});
    CHECK(bpe_words("a1b2") == Words{"a", "1", "b", "2"});
    // Whitespace: a run at the end stays whole; before text it keeps all but its last character,
    // and a single whitespace character that is not ' ' stands alone.
    CHECK(bpe_words("a  ") == Words{"a", "  "});
    CHECK(bpe_words("\t\tx") == Words{"\t", "\t", "x"});
    CHECK(bpe_words("x\n y") == Words{"x", "\n", " y"});
    CHECK(bpe_words("   ") == Words{"   "});
    CHECK(bpe_words("") == Words{});
    // Unicode classes: '½' and '²' are \p{N}, 'é' and 'ж' \p{L}; NBSP and U+3000 are \s but,
    // unlike ' ', never join the next word.
    CHECK(bpe_words("\xC2\xBD \xC2\xB2") == Words{"\xC2\xBD", " \xC2\xB2"});
    CHECK(bpe_words("caf\xC3\xA9 \xD0\xB6") == Words{"caf\xC3\xA9", " \xD0\xB6"});
    CHECK(bpe_words("x\xC2\xA0\xC2\xA0y") == Words{"x", "\xC2\xA0", "\xC2\xA0", "y"});
    CHECK(bpe_words("a\xE3\x80\x80\x62") == Words{"a", "\xE3\x80\x80", "b"});
    // An emoji and U+FFFD (from a stray byte) are "anything else".
    CHECK(bpe_words(" \xF0\x9F\xA6\x99.cpp") == Words{" \xF0\x9F\xA6\x99.", "cpp"});
    CHECK(bpe_words("a\xFF!") == Words{"a", "\xEF\xBF\xBD!"});
}

TEST_CASE("BytePair merges the lowest rank first, the leftmost on ties, within words only", "[gguf_tokenizer]") {
    SECTION("rank order decides which pair merges first") {
        // "b c" outranks "a b", so "abc" becomes "a" + "bc", then "abc".
        const BpeVocabulary v =
            bpe_vocabulary({"a", "b", "c", "ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}, {"a", "bc"}});
        const BytePairTokenizer t(v);
        CHECK(t.encode("abc") == bpe_ids(v, {"abc"}));
        CHECK(t.encode("ab") == bpe_ids(v, {"ab"}));
        CHECK(t.encode("cab") == bpe_ids(v, {"c", "ab"}));
        // Without "a bc", the earlier "b c" still wins over "a b".
        const BpeVocabulary w = bpe_vocabulary({"a", "b", "c", "ab", "bc"}, {{"b", "c"}, {"a", "b"}});
        CHECK(BytePairTokenizer(w).encode("abc") == bpe_ids(w, {"a", "bc"}));
        const BpeVocabulary u = bpe_vocabulary({"a", "b", "c", "ab", "bc"}, {{"a", "b"}, {"b", "c"}});
        CHECK(BytePairTokenizer(u).encode("abc") == bpe_ids(u, {"ab", "c"}));
    }
    SECTION("equal ranks merge leftmost first") {
        const BpeVocabulary v = bpe_vocabulary({"a", "aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
        const BytePairTokenizer t(v);
        CHECK(t.encode("aaa") == bpe_ids(v, {"aa", "a"}));
        CHECK(t.encode("aaaaa") == bpe_ids(v, {"aaaa", "a"}));
        CHECK(t.encode("aaaaaaa") == bpe_ids(v, {"aaaa", "aa", "a"}));
    }
    SECTION("words never merge across their boundary") {
        const BpeVocabulary v = bpe_vocabulary({"a", "b", " ", " b", "a "}, {{"a", " "}, {" ", "b"}});
        const BytePairTokenizer t(v);
        CHECK(t.encode("a b") == bpe_ids(v, {"a", " b"}));
        CHECK(t.encode("a  b") == bpe_ids(v, {"a", " ", " b"}));
    }
    SECTION("a merged symbol without a piece falls back to its one-byte pieces, dropping the rest") {
        // "x y" merges, but "xy" is no piece: "x", "y". " x" has no piece either: ' ' is spelled
        // 'Ġ' (two bytes), neither of which is a piece, so only "x" survives, as in llama.cpp.
        const BpeVocabulary v = bpe_vocabulary({"x", "y", " "}, {{"x", "y"}, {" ", "x"}});
        const BytePairTokenizer t(v);
        CHECK(t.encode("xy") == bpe_ids(v, {"x", "y"}));
        CHECK(t.encode(" x") == bpe_ids(v, {"x"}));
        CHECK(t.encode(" ") == bpe_ids(v, {" "}));
        CHECK(t.encode("z") == std::vector<int>{});
    }
}

TEST_CASE("BytePair token_to_piece and decode render pieces as llama.cpp does", "[gguf_tokenizer]") {
    BpeVocabulary v = bpe_vocabulary({"a", " b", "\n", "\xC3\xA9"}, {});
    v.pieces.push_back("<|endoftext|>");  // 4: control
    v.pieces.push_back("<x>");            // 5: user-defined, written verbatim
    v.pieces.push_back("\xE4\xB8\xAD");   // 6: normal, but '中' is outside the byte alphabet
    v.pieces.push_back("<unused>");       // 7: unused
    v.types.assign(v.pieces.size(), BpeTokenType::normal);
    v.types[4] = BpeTokenType::control;
    v.types[5] = BpeTokenType::user_defined;
    v.types[7] = BpeTokenType::unused;
    v.bos = v.eos = 4;
    const BytePairTokenizer t(v);
    CHECK(t.vocab_size() == 8);
    CHECK(t.bos() == 4);
    CHECK(t.eos() == 4);
    CHECK(t.vocabulary().pieces.size() == 8);
    CHECK(t.token_to_piece(0) == "a");
    CHECK(t.token_to_piece(1) == " b");
    CHECK(t.token_to_piece(2) == "\n");
    CHECK(t.token_to_piece(3) == "\xC3\xA9");
    CHECK(t.token_to_piece(4) == "");
    CHECK(t.token_to_piece(5) == "<x>");
    CHECK(t.token_to_piece(6) == "[UNK_BYTE_0xe4b8ad\xE4\xB8\xAD]");
    CHECK(t.token_to_piece(7) == "");
    CHECK_THROWS_AS(t.token_to_piece(8), std::out_of_range);
    CHECK_THROWS_AS(t.token_to_piece(-1), std::out_of_range);
    const std::vector<int> ids{4, 0, 1, 5, 2, 3, 4};
    CHECK(t.decode(ids) == "a b<x>\n\xC3\xA9");
    CHECK(t.decode(std::vector<int>{}) == "");
}

TEST_CASE("BytePair cuts user-defined pieces out of the text first, but not control ones", "[gguf_tokenizer]") {
    BpeVocabulary v = bpe_vocabulary({"a", "b", "<", ">", "x", "ab"}, {{"a", "b"}});
    v.pieces.push_back("<x>");   // 6: user-defined
    v.pieces.push_back("<xx>");  // 7: user-defined, longer, so cut first
    v.pieces.push_back("<c>");   // 8: control: left to the pre-tokenizer when not parsing specials
    v.types.assign(v.pieces.size(), BpeTokenType::normal);
    v.types[6] = v.types[7] = BpeTokenType::user_defined;
    v.types[8] = BpeTokenType::control;
    const BytePairTokenizer t(v);
    CHECK(t.encode("a<x>b") == std::vector<int>{0, 6, 1});
    CHECK(t.encode("<x><x>") == std::vector<int>{6, 6});
    CHECK(t.encode("a<xx>b<x>") == std::vector<int>{0, 7, 1, 6});
    CHECK(t.encode("ab<x>ab") == std::vector<int>{5, 6, 5});
    CHECK(t.encode("<c>") == std::vector<int>{2, 3});  // "<", "c" (no piece: dropped), ">"
    CHECK(t.decode(t.encode("a<xx>b<x>")) == "a<xx>b<x>");
}

TEST_CASE("BytePair refuses what it does not implement, and malformed vocabularies", "[gguf_tokenizer]") {
    using Catch::Matchers::Contains;
    const auto refused = [](auto spoil) {
        BpeVocabulary v = bpe_vocabulary({"a", "b", "ab"}, {{"a", "b"}});
        spoil(v);
        try {
            const BytePairTokenizer t(std::move(v));
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK(refused([](BpeVocabulary&) {}) == "accepted");
    CHECK(refused([](BpeVocabulary& v) { v.pre = "llama-bpe"; }) ==
          "tokenizer.ggml.pre = 'llama-bpe' is not supported; supported: gpt-2");
    // llama.cpp's "default" adds patterns around the GPT-2 one: another pre-tokenizer.
    CHECK(refused([](BpeVocabulary& v) { v.pre = "default"; }) ==
          "tokenizer.ggml.pre = 'default' is not supported; supported: gpt-2");
    CHECK_THAT(refused([](BpeVocabulary& v) { v.model = "llama"; }), Contains("'llama'"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.pieces.clear(); }), Contains("no pieces"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.pieces[1].clear(); }), Contains("piece 1 is empty"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.pieces[2] = "a"; }), Contains("repeats piece 0"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.merges.push_back("ab"); }), Contains("merge 1 'ab'"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.merges.push_back(" a b"); }), Contains("merge 1"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.merges.push_back("a "); }), Contains("merge 1"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.merges.push_back("a b c"); }), Contains("merge 1"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.types.assign(2, BpeTokenType::normal); }),
               Contains("2 token types for 3 pieces"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.scores.assign(4, 0.0f); }), Contains("4 scores for 3 pieces"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.bos = 3; }), Contains("tokenizer.ggml.bos_token_id = 3"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.eos = -1; }), Contains("tokenizer.ggml.eos_token_id = -1"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.unknown = 7; }), Contains("unknown_token_id"));
    CHECK_THAT(refused([](BpeVocabulary& v) { v.padding = 3; }), Contains("padding_token_id"));
    // A merge listed twice keeps its first rank, as llama.cpp's map does.
    CHECK(refused([](BpeVocabulary& v) { v.merges.push_back("a b"); }) == "accepted");
}

TEST_CASE("BytePair passes llama.cpp's test vectors for ggml-vocab-gpt-2.gguf", "[gguf_tokenizer]") {
    const fs::path file = fs::path("gguf") / "ggml-vocab-gpt-2.gguf";
    if (!multibool::testing::assets_present(file)) return;
    const fs::path path = multibool::examples::assets_dir() / file;
    const BytePairTokenizer t(multibool::llama::load_vocabulary(path));
    CHECK(t.vocab_size() == 50257);
    CHECK(t.bos() == 50256);
    CHECK(t.eos() == 50256);
    CHECK(t.token_to_piece(50256) == "");  // <|endoftext|> is a control token
    CHECK(t.encode(" ") == std::vector<int>{220});
    CHECK(t.encode("\n") == std::vector<int>{198});
    check_llama_cpp_vectors(t, path, true);
}

TEST_CASE("BytePair round-trips tinystories through the GPT-2 vocabulary", "[gguf_tokenizer]") {
    const fs::path file = fs::path("gguf") / "ggml-vocab-gpt-2.gguf";
    if (!multibool::testing::assets_present(file) || !multibool::testing::assets_present("tinystories-valid.txt")) {
        return;
    }
    const fs::path assets = multibool::examples::assets_dir();
    const BytePairTokenizer t(multibool::llama::load_vocabulary(assets / file));
    const std::string text = multibool::testing::read_file(assets / "tinystories-valid.txt");
    const std::vector<int> ids = t.encode(text);
    // English prose: GPT-2 averages well over three bytes a token.
    CHECK(ids.size() * 3 < text.size());
    CHECK(t.decode(ids) == text);
}

}  // namespace
