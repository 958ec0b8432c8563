#pragma once
// The tokenizer a command uses, whichever file it came from: llama2.c's tokenizer file, or a GGUF
// file's vocabulary (SentencePiece or byte-level BPE, as llama.cpp tokenizes). One interface for
// perplexity, generation and fine-tuning: encode with optional BOS/EOS, decode one token after
// another.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "llama/byte_pair_tokenizer.hpp"
#include "llama/gguf_vocabulary.hpp"
#include "llama/sentencepiece_tokenizer.hpp"
#include "llama/tokenizer.hpp"
#include "multibool/core/gguf_file.hpp"

namespace multibool::llama {

class TextTokenizer {
public:
    explicit TextTokenizer(Tokenizer llama2c) : tokenizer_(std::move(llama2c)) {}
    explicit TextTokenizer(SentencePieceTokenizer spm) : tokenizer_(std::move(spm)) { render_pieces(); }
    explicit TextTokenizer(BytePairTokenizer bpe) : tokenizer_(std::move(bpe)) { render_pieces(); }

    [[nodiscard]] std::size_t vocab_size() const noexcept {
        return std::visit([](const auto& t) { return t.vocab_size(); }, tokenizer_);
    }
    // What the file is: "llama2.c", "SentencePiece" or "byte-level BPE".
    [[nodiscard]] std::string_view kind() const noexcept {
        static constexpr std::string_view names[] = {"llama2.c", "SentencePiece", "byte-level BPE"};
        return names[tokenizer_.index()];
    }
    // A GGUF vocabulary's metadata; null for llama2.c's tokenizer file.
    [[nodiscard]] const Vocabulary* gguf_vocabulary() const noexcept {
        return std::visit(
            [](const auto& t) -> const Vocabulary* {
                if constexpr (is_llama2c<decltype(t)>)
                    return nullptr;
                else
                    return &t.vocabulary();
            },
            tokenizer_);
    }
    [[nodiscard]] std::optional<int> bos() const noexcept {
        const Vocabulary* v = gguf_vocabulary();
        return v != nullptr ? v->bos : std::optional<int>(Tokenizer::bos);
    }
    // The BOS id, for protocols that need one; throws when the vocabulary has none.
    [[nodiscard]] int required_bos() const {
        const auto id = bos();
        if (!id) throw std::runtime_error("the " + std::string(kind()) + " vocabulary has no BOS token");
        return *id;
    }

    // Whether a text starts with BOS, as llama.cpp tokenizes one with add_special (a GGUF
    // vocabulary's tokenizer.ggml.add_bos_token; llama2.c always adds it).
    [[nodiscard]] bool adds_bos() const noexcept {
        const Vocabulary* v = gguf_vocabulary();
        return v == nullptr || v->add_bos;
    }

    // Whether generation stops at token: BOS, as llama2.c's run loop stops (so a GGUF file and its
    // llama2.c checkpoint continue a prompt alike), and a GGUF vocabulary's EOS, as llama.cpp stops.
    [[nodiscard]] bool ends_generation(int token) const noexcept {
        const Vocabulary* v = gguf_vocabulary();
        return token == bos() || (v != nullptr && token == v->eos);
    }

    // The text's ids, with BOS and EOS when asked. llama2.c's encoder adds its dummy-prefix
    // space; a GGUF vocabulary adds it when its add_space_prefix says so.
    [[nodiscard]] std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos) const {
        return std::visit(
            [&](const auto& t) {
                if constexpr (is_llama2c<decltype(t)>) {
                    return t.encode(text, add_bos, add_eos);
                } else {
                    std::vector<int> ids;
                    if (add_bos) ids.push_back(required_bos());
                    const std::vector<int> body = t.encode(text);
                    ids.insert(ids.end(), body.begin(), body.end());
                    if (add_eos) {
                        if (!t.eos()) throw std::runtime_error("the vocabulary has no EOS token");
                        ids.push_back(*t.eos());
                    }
                    return ids;
                }
            },
            tokenizer_);
    }

    // The text of token after previous; the dummy-prefix space of the first piece after BOS is
    // dropped, as llama2.c's decode does (llama.cpp's detokenizer keeps it after BOS, but its
    // llama-cli echoes the prompt as typed, which is what this gives). The view lives as long as
    // this tokenizer.
    [[nodiscard]] std::string_view decode(int previous, int token) const {
        if (const auto* llama2c = std::get_if<Tokenizer>(&tokenizer_)) return llama2c->decode(previous, token);
        if (token < 0 || static_cast<std::size_t>(token) >= rendered_.size()) {
            throw std::out_of_range("TextTokenizer: token id " + std::to_string(token) + " outside a vocabulary of " +
                                    std::to_string(rendered_.size()));
        }
        std::string_view text = rendered_[static_cast<std::size_t>(token)];
        if (gguf_vocabulary()->add_space_prefix && previous == bos() && text.starts_with(' ')) text.remove_prefix(1);
        return text;
    }

    [[nodiscard]] std::string decode(std::span<const int> tokens) const {
        return detail::decode_sequence(*this, tokens);
    }

private:
    template <class T>
    static constexpr bool is_llama2c = std::is_same_v<std::remove_cvref_t<T>, Tokenizer>;

    // Each id's text, once: decode hands out views of it.
    void render_pieces() {
        std::visit(
            [&](const auto& t) {
                if constexpr (!is_llama2c<decltype(t)>) {
                    rendered_.reserve(t.vocab_size());
                    for (std::size_t id = 0; id < t.vocab_size(); ++id) {
                        rendered_.push_back(t.token_to_piece(static_cast<int>(id)));
                    }
                }
            },
            tokenizer_);
    }

    std::variant<Tokenizer, SentencePieceTokenizer, BytePairTokenizer> tokenizer_;
    std::vector<std::string> rendered_;  // GGUF vocabularies: each id's text
};

// A GGUF file (a model or a vocabulary-only file) gives its vocabulary; any other file is read
// as llama2.c's tokenizer file.
inline TextTokenizer load_text_tokenizer(const std::filesystem::path& path) {
    if (!gguf::is_gguf_file(path)) return TextTokenizer(load_tokenizer(path));
    Vocabulary vocabulary = load_vocabulary(path);
    try {
        if (vocabulary.model == "llama") return TextTokenizer(SentencePieceTokenizer(std::move(vocabulary)));
        return TextTokenizer(BytePairTokenizer(std::move(vocabulary)));
    } catch (const std::invalid_argument& e) {
        throw FormatError(path.string(), "tokenizer.ggml", "a vocabulary this tokenizer implements", e.what());
    }
}

}  // namespace multibool::llama
