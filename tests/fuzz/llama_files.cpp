// Fuzz targets for the LLaMA example's input files: llama2.c checkpoints, tokenizer files (llama2.c's
// and GGUF vocabularies), multibool model files and GGUF models. Each file that loads must run a
// token through the model, or encode and decode text with ids inside the vocabulary.
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <multibool/nn/dense_linear.hpp>

#include "fuzz/fuzz_target.hpp"
#include "fuzz/tiny_model.hpp"
#include "llama/checkpoint.hpp"
#include "llama/conversion.hpp"
#include "llama/gguf_model.hpp"
#include "llama/model_file.hpp"
#include "llama/text_tokenizer.hpp"
#include "llama/transformer.hpp"
#include "llama_gguf_fixture.hpp"

namespace multibool::fuzz {
namespace {

using namespace multibool::llama;

// One token (id 0) at position 0: a session of one position, whatever seq_len the file claims.
template <class Model>
void forward_one_token(const Model& model) {
    allowing_overflow_refusal([&] {
        Session session(model.config(), 1);
        const std::array<int, 1> token{0};
        const auto logits = model.forward(token, 0, session);
        require(logits.rows() == 1 && logits.cols() == model.config().vocab_size, "the logits' shape is not 1 x vocab");
    });
}

std::string file_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool llama2c_checkpoint(Bytes input) {
    const ScratchFile scratch;
    std::optional<Checkpoint> loaded;
    try {
        loaded.emplace(load_checkpoint(scratch.write(input)));
    } catch (const FormatError&) {
        return false;
    }
    const Checkpoint& ckpt = *loaded;
    const ScratchFile again;
    const Checkpoint reloaded = load_checkpoint(again.write(llama2c_bytes(ckpt)));
    require(reloaded.config() == ckpt.config(), "a rewritten checkpoint reloads with another config");
    const auto float_linear = [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); };
    forward_one_token(Transformer<DenseLinear>::from_checkpoint(ckpt, float_linear));
    return true;
}

std::vector<Seed> llama2c_seeds() {
    return {{"tiny-shared", llama2c_bytes(tiny_checkpoint(tiny_config(true)))},
            {"tiny-untied", llama2c_bytes(tiny_checkpoint(tiny_config(false)))}};
}

// Texts each loaded tokenizer encodes: ASCII, UTF-8, invalid UTF-8, NUL, and the input's own start.
std::vector<std::string> sample_texts(Bytes input) {
    std::vector<std::string> texts{"", " ", "Once upon a time", "caf\xC3\xA9 \xF0\x9F\x98\x80",
                                   std::string("a\0b\xFF\x80\n\t", 7)};
    texts.push_back(text_of(input.first(std::min<std::size_t>(input.size(), 48))));
    return texts;
}

bool tokenizer(Bytes input) {
    const ScratchFile scratch;
    std::optional<TextTokenizer> loaded;
    try {
        loaded.emplace(load_text_tokenizer(scratch.write(input)));
    } catch (const FormatError&) {
        return false;
    }
    const TextTokenizer& t = *loaded;
    for (const std::string& text : sample_texts(input)) {
        const std::vector<int> ids = t.encode(text, t.bos().has_value(), false);
        for (const int id : ids) require(id >= 0 && std::size_t(id) < t.vocab_size(), "an id outside the vocabulary");
        static_cast<void>(t.decode(ids));
    }
    return true;
}

// A llama2.c vocabulary: the three specials, the 256 byte pieces, then a few merges.
std::string llama2c_tokenizer_bytes() {
    std::vector<std::string> pieces{"<unk>", "<s>", "</s>"};
    static constexpr char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) pieces.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    for (const char* p : {" ", "a", "b", "ab", " a", "Once", " upon", "\xC3\xA9"}) pieces.emplace_back(p);
    std::ostringstream out;
    BinaryWriter w(out);
    w.write(std::int32_t{8});
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        w.write(i < 259 ? 0.0f : -float(i));
        w.write(std::int32_t(pieces[i].size()));
        w.write(std::span<const char>(pieces[i]));
    }
    return out.str();
}

// A small llama GGUF file (llama_gguf_fixture.hpp) with its 512-piece vocabulary.
std::string gguf_model_bytes() {
    const ScratchFile scratch;
    testing::write_llama_gguf(scratch.path(), {}, 3, {16, 24, 1, 4, 2, 16});
    return file_bytes(scratch.path());
}

std::vector<Seed> tokenizer_seeds() { return {{"llama2c", llama2c_tokenizer_bytes()}, {"gguf", gguf_model_bytes()}}; }

// The model file's K and G: one instantiation, so other shapes are refused by the header.
constexpr std::size_t model_kernels = 2, model_group = 8;

bool model_file(Bytes input) {
    const ScratchFile scratch;
    try {
        forward_one_token(load_model<model_kernels, model_group>(scratch.write(input)));
    } catch (const FormatError&) {
        return false;
    }
    return true;
}

std::vector<Seed> model_file_seeds() {
    std::vector<Seed> seeds;
    for (const bool shared : {true, false}) {
        const ScratchFile scratch;
        save_model(convert<model_kernels, model_group>(tiny_checkpoint(tiny_config(shared))).first, scratch.path());
        seeds.push_back({shared ? "tiny-shared" : "tiny-untied", file_bytes(scratch.path())});
    }
    return seeds;
}

bool gguf_model(Bytes input) {
    const ScratchFile scratch;
    try {
        const gguf::File file(scratch.write(input));
        const Config c = read_gguf_config(file);
        if (gguf_projections(file, c) == GgufProjections::q1_0) {
            forward_one_token(read_gguf_q1_0_model(file));
        } else {
            const auto float_linear = [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); };
            forward_one_token(Transformer<DenseLinear>::from_checkpoint(read_gguf_checkpoint(file), float_linear));
        }
    } catch (const FormatError&) {
        return false;
    }
    return true;
}

std::vector<Seed> gguf_model_seeds() { return {{"tiny-f32", gguf_model_bytes()}}; }

const Registration llama2c_target{"llama2c_checkpoint", llama2c_checkpoint, llama2c_seeds};
const Registration tokenizer_target{"tokenizer", tokenizer, tokenizer_seeds};
const Registration model_file_target{"model_file", model_file, model_file_seeds};
const Registration gguf_model_target{"gguf_model", gguf_model, gguf_model_seeds};

}  // namespace
}  // namespace multibool::fuzz
