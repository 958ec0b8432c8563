#pragma once
// One file for a converted model (all fields little-endian):
//   magic "MBOOLLLM" | u32 version | u32 kernels | u32 group_size | u32 word_bits
//   | the llama2.c header (7 int32; negative vocab_size = untied classifier)
//   | float32 token_embedding [vocab, dim], rms_att [L, dim], rms_ffn [L, dim], rms_final [dim],
//     wcls [vocab, dim] when untied | u64 FNV-1a checksum of all the above
//   | per layer, wq wk wv wo w1 w2 w3 as BitPlaneMatrix records (each versioned and checksummed)
// A reader refuses a file written for another K, G or word width, or of another length than its
// header implies.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/transformer.hpp"
#include "multibool/core/binary_io.hpp"
#include "multibool/core/serialization.hpp"
#include "multibool/nn/multibool_linear.hpp"

namespace multibool::llama {

inline constexpr std::array<char, 8> model_file_magic{'M', 'B', 'O', 'O', 'L', 'L', 'L', 'M'};
inline constexpr std::uint32_t model_file_version = 1;

struct ModelFileHeader {
    std::size_t kernels = 0;
    std::size_t group_size = 0;
    std::size_t word_bits = 0;
    Config config;
    std::uint32_t version = 0;
};

// True when the file starts with the model-file magic (false for llama2.c checkpoints).
inline bool is_model_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::array<char, 8> magic{};
    in.read(magic.data(), magic.size());
    return in.gcount() == std::streamsize(magic.size()) && magic == model_file_magic;
}

namespace detail {

// How the model file and the fine-tuning checkpoint begin: the magic, the version (one this
// reader knows: oldest..newest), then K and G.
template <class Header>
Header read_kernels_and_group(BinaryReader& reader, const std::array<char, 8>& magic, std::uint32_t oldest,
                              std::uint32_t newest) {
    reader.expect_magic(magic);
    const auto version = reader.read<std::uint32_t>("version");
    if (version < oldest || version > newest) {
        throw FormatError(
            reader.source(), "version",
            oldest == newest ? std::to_string(newest) : std::to_string(oldest) + ".." + std::to_string(newest),
            std::to_string(version));
    }
    Header header;
    header.version = version;
    header.kernels = reader.read<std::uint32_t>("kernels");
    header.group_size = reader.read<std::uint32_t>("group_size");
    return header;
}

inline ModelFileHeader read_model_header(BinaryReader& reader) {
    auto header =
        read_kernels_and_group<ModelFileHeader>(reader, model_file_magic, model_file_version, model_file_version);
    header.word_bits = reader.read<std::uint32_t>("word_bits");
    header.config = read_config(reader);
    return header;
}

// The exact length a model file of this config and matrix type has. Checked before anything is
// allocated, so a header with absurd dimensions fails at once instead of after gigabytes.
template <class Matrix>
void check_model_file_length(const std::filesystem::path& path, const Config& c) {
    constexpr std::uint64_t file_header = 8 + 4 * 4 + 7 * 4;          // magic, 4 u32, llama2.c header
    constexpr std::uint64_t record_overhead = 8 + 5 * 4 + 3 * 8 + 8;  // magic, 5 u32, 3 u64, checksum
    const std::uint64_t table = std::uint64_t{c.vocab_size} * c.dim;
    std::uint64_t expected =
        file_header +
        sizeof(float) * (table + 2 * std::uint64_t{c.n_layers} * c.dim + c.dim + (c.shared_classifier ? 0 : table)) +
        sizeof(std::uint64_t);
    for (Projection p : projections) {
        const auto [rows, cols] = projection_shape(c, p);
        // Each product is at most 2^40 (dimensions <= 2^20), far from overflowing.
        const std::uint64_t payload = Matrix::word_count(rows, cols) * sizeof(typename Matrix::word_type) +
                                      Matrix::scale_count(rows, cols) * sizeof(typename Matrix::scale_type);
        expected += c.n_layers * (record_overhead + payload);
    }
    std::error_code error;
    const std::uint64_t found = std::filesystem::file_size(path, error);
    if (error) throw std::runtime_error(path.string() + ": cannot read its size: " + error.message());
    if (found != expected) {
        throw FormatError(path.string(), "file length", std::to_string(expected) + " bytes as the header implies",
                          std::to_string(found) + " bytes");
    }
}

// The float tensors in file order: token_embedding, rms_att [L, dim], rms_ffn [L, dim], rms_final,
// and wcls when the classifier is untied. Shared by the model file and the fine-tuning checkpoint.
template <class Linear>
void write_float_tensors(BinaryWriter& w, const Transformer<Linear>& model) {
    std::vector<float> rms_att;
    std::vector<float> rms_ffn;
    for (const auto& block : model.blocks()) {
        rms_att.insert(rms_att.end(), block.rms_att.begin(), block.rms_att.end());
        rms_ffn.insert(rms_ffn.end(), block.rms_ffn.begin(), block.rms_ffn.end());
    }
    w.write(model.token_embedding().data());
    w.write(std::span<const float>(rms_att));
    w.write(std::span<const float>(rms_ffn));
    w.write(model.rms_final());
    w.write(model.config().shared_classifier ? std::span<const float>() : model.classifier().data());
}

// What write_float_tensors wrote: the model's FloatTensors, and its blocks with their norms set
// (the projections are the caller's to read).
template <class Linear>
struct StoredFloatTensors {
    FloatTensors tensors;
    std::vector<Block<Linear>> blocks;
};

template <class Linear>
StoredFloatTensors<Linear> read_float_tensors(BinaryReader& reader, const Config& c) {
    StoredFloatTensors<Linear> stored;
    std::vector<float> rms_att;
    std::vector<float> rms_ffn;
    const std::size_t table = c.vocab_size * c.dim;
    const std::array<std::tuple<const char*, std::vector<float>*, std::size_t>, 5> arrays = {{
        {"token_embedding", &stored.tensors.token_embedding, table},
        {"rms_att", &rms_att, c.n_layers * c.dim},
        {"rms_ffn", &rms_ffn, c.n_layers * c.dim},
        {"rms_final", &stored.tensors.rms_final, c.dim},
        {"wcls", &stored.tensors.wcls, c.shared_classifier ? 0 : table},
    }};
    for (const auto& [name, values, count] : arrays) *values = read_finite_floats(reader, count, name);
    stored.blocks.resize(c.n_layers);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        stored.blocks[l].rms_att.assign(rms_att.begin() + l * c.dim, rms_att.begin() + (l + 1) * c.dim);
        stored.blocks[l].rms_ffn.assign(rms_ffn.begin() + l * c.dim, rms_ffn.begin() + (l + 1) * c.dim);
    }
    return stored;
}

// One projection's matrix record, refused unless it has the shape the config gives it.
template <class Matrix>
Matrix read_projection(std::istream& in, const std::string& file, const Config& c, std::size_t layer, Projection p) {
    const std::string where = "layer " + std::to_string(layer) + " " + projection_name(p);
    Matrix m = load<Matrix>(in, file + " (" + where + ")");
    const auto [rows, cols] = projection_shape(c, p);
    if (m.rows() != rows || m.cols() != cols) {
        throw FormatError(file, where + " shape", std::to_string(rows) + "x" + std::to_string(cols),
                          std::to_string(m.rows()) + "x" + std::to_string(m.cols()));
    }
    return m;
}

}  // namespace detail

inline ModelFileHeader read_model_header(const std::filesystem::path& path) {
    auto in = open_for_reading(path);
    BinaryReader reader(in, path.string());
    return detail::read_model_header(reader);
}

template <std::size_t K, std::size_t G, class Scale, class Word, class Backend>
void save_model(const Transformer<MultiBoolLinear<K, G, Scale, Word, Backend>>& model,
                const std::filesystem::path& path) {
    const Config& c = model.config();
    write_file_atomically(path, [&](std::ostream& out) {
        BinaryWriter w(out);
        w.write(std::span<const char>(model_file_magic));
        w.write(model_file_version);
        w.write(std::uint32_t{K});
        w.write(static_cast<std::uint32_t>(G));
        w.write(static_cast<std::uint32_t>(bits_of<Word>));
        detail::write_config(w, c);
        detail::write_float_tensors(w, model);
        w.write_checksum();
        for (const auto& block : model.blocks()) {
            for (Projection p : projections) save(block.projection(p).weights(), out);
        }
    });
}

// Loads a model file written for exactly this K, G and word width; errors are FormatErrors
// naming the file and the field (a wrong K reads "field 'kernels': expected 3, found 2").
template <std::size_t K, std::size_t G, class Scale = half, class Word = std::uint64_t, class Backend = DefaultBackend>
Transformer<MultiBoolLinear<K, G, Scale, Word, Backend>> load_model(const std::filesystem::path& path) {
    using Linear = MultiBoolLinear<K, G, Scale, Word, Backend>;
    using Matrix = typename Linear::matrix_type;
    auto in = open_for_reading(path);
    const std::string file = path.string();
    BinaryReader reader(in, file);
    const ModelFileHeader header = detail::read_model_header(reader);
    reader.expect("kernels", header.kernels, K);
    reader.expect("group_size", header.group_size, G);
    reader.expect("word_bits", header.word_bits, bits_of<Word>);
    const Config& c = header.config;
    detail::check_model_file_length<Matrix>(path, c);

    auto stored = detail::read_float_tensors<Linear>(reader, c);
    reader.verify_checksum();
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        for (Projection p : projections) {
            stored.blocks[l].projection(p) = Linear(detail::read_projection<Matrix>(in, file, c, l, p));
        }
    }
    return Transformer<Linear>(c, std::move(stored.tensors), std::move(stored.blocks));
}

}  // namespace multibool::llama
