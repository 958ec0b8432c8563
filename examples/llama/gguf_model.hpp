#pragma once
// LLaMA-family models in GGUF files (llama.cpp's names: general.architecture = "llama", the
// llama.* hyperparameters, tensors token_embd, blk.N.attn_q ... ffn_down, output_norm and an
// optional untied output). ggml orders a matrix's dimensions input first (ne[0] = in), and its
// rows are stored one after another, so a [in, out] tensor's bytes are the [out, in] row-major
// matrix this example uses. llama.cpp's llama2.c converter keeps llama2.c's RoPE pairing, and
// LLaMA's RoPE in llama.cpp rotates adjacent pairs as llama2.c does: no permutation is needed.
// Float tensors of any type the reader converts are read as floats; a file whose projections are
// all Q1_0 (K = 1, G = 128) is read straight into Boolean kernels, and written back as one.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/conversion.hpp"
#include "llama/transformer.hpp"
#include "multibool/core/gguf_file.hpp"
#include "multibool/core/gguf_writer.hpp"
#include "multibool/core/q1_0_blocks.hpp"

namespace multibool::llama {

inline const char* gguf_projection_name(Projection p) noexcept {
    static constexpr std::array<const char*, 7> names = {"attn_q",   "attn_k",   "attn_v", "attn_output",
                                                         "ffn_gate", "ffn_down", "ffn_up"};
    return names[static_cast<std::size_t>(p)];
}

// llama.cpp names a weight "<tensor>.weight": "token_embd.weight", "blk.0.attn_q.weight".
inline std::string gguf_weight(const std::string& tensor) { return tensor + ".weight"; }
inline std::string gguf_block_tensor(std::size_t layer, const char* name) {
    return gguf_weight("blk." + std::to_string(layer) + "." + name);
}

// How a file stores its projections: as floats to convert, or as Q1_0 Boolean kernels.
enum class GgufProjections { float_weights, q1_0 };

namespace detail {

inline std::size_t gguf_dimension(const gguf::Metadata& m, const std::string& key) {
    const std::uint64_t value = m.unsigned_integer(key);
    if (value < 1 || value > std::uint64_t(max_dimension)) {
        throw FormatError(m.source(), key, "a value in [1, " + std::to_string(max_dimension) + "]",
                          std::to_string(value));
    }
    return static_cast<std::size_t>(value);
}

// The tensor, refused unless its ggml dimensions are exactly `dims` (input dimension first).
inline const gguf::TensorInfo& gguf_tensor(const gguf::File& file, const std::string& name,
                                           std::vector<std::uint64_t> dims) {
    const gguf::TensorInfo& info = file.tensor(name);
    if (info.dims != dims) {
        throw FormatError(file.path().string(), "tensor " + name, "dimensions " + gguf::shape_text(dims),
                          info.shape_text());
    }
    return info;
}

inline std::vector<float> gguf_floats(const gguf::File& file, const gguf::TensorInfo& info) {
    std::vector<float> values = file.to_float(info);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (!std::isfinite(values[i])) {
            throw FormatError(file.path().string(), "tensor " + info.name, "finite values",
                              std::to_string(values[i]) + " at index " + std::to_string(i));
        }
    }
    return values;
}

inline std::vector<std::uint64_t> gguf_dims(const Config& c, Projection p) {
    const auto [rows, cols] = projection_shape(c, p);
    return {cols, rows};
}

}  // namespace detail

// The hyperparameters of a llama-architecture file; other architectures are refused by name.
inline Config read_gguf_config(const gguf::File& file) {
    const gguf::Metadata& m = file.metadata();
    const std::string source = m.source();
    const std::string architecture = m.text("general.architecture");
    if (architecture != "llama") {
        throw FormatError(source, "general.architecture", "\"llama\" (the only architecture this example runs)",
                          "\"" + architecture + "\"");
    }
    if (file.tensors().empty()) {
        throw FormatError(source, "tensors", "a model's tensors",
                          "none (a vocabulary-only file: give it as --tokenizer)");
    }
    Config c;
    c.dim = detail::gguf_dimension(m, "llama.embedding_length");
    c.hidden_dim = detail::gguf_dimension(m, "llama.feed_forward_length");
    c.n_layers = detail::gguf_dimension(m, "llama.block_count");
    c.n_heads = detail::gguf_dimension(m, "llama.attention.head_count");
    c.n_kv_heads = m.contains("llama.attention.head_count_kv")
                       ? detail::gguf_dimension(m, "llama.attention.head_count_kv")
                       : c.n_heads;
    c.seq_len = detail::gguf_dimension(m, "llama.context_length");
    const gguf::TensorInfo& embedding = file.tensor("token_embd.weight");
    if (embedding.dims.size() != 2 || embedding.dims[0] != c.dim ||
        embedding.dims[1] > std::uint64_t(detail::max_dimension)) {
        throw FormatError(source, "tensor token_embd.weight", "dimensions [" + std::to_string(c.dim) + ", vocabulary]",
                          embedding.shape_text());
    }
    c.vocab_size = static_cast<std::size_t>(embedding.dims[1]);
    // llama.cpp's llama2.c converter writes a tied classifier out as a copy: the same bytes are tied.
    const gguf::TensorInfo* output = file.find_tensor("output.weight");
    c.shared_classifier = output == nullptr || (output->type == embedding.type && output->dims == embedding.dims &&
                                                std::ranges::equal(file.data(*output), file.data(embedding)));
    c.rope_theta = static_cast<float>(m.optional_real("llama.rope.freq_base").value_or(llama2c_rope_theta));
    c.norm_epsilon =
        static_cast<float>(m.optional_real("llama.attention.layer_norm_rms_epsilon").value_or(llama2c_norm_epsilon));
    if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
        throw FormatError(source, "llama.rope.freq_base", "a positive finite value", std::to_string(c.rope_theta));
    }
    if (!(c.norm_epsilon > 0) || !std::isfinite(c.norm_epsilon)) {
        throw FormatError(source, "llama.attention.layer_norm_rms_epsilon", "a positive finite value",
                          std::to_string(c.norm_epsilon));
    }
    if (const auto scaling = m.optional_text("llama.rope.scaling.type"); scaling && *scaling != "none") {
        throw FormatError(source, "llama.rope.scaling.type", "\"none\" (RoPE scaling is not implemented)",
                          "\"" + *scaling + "\"");
    }
    if (c.dim % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0 || c.head_size() % 2 != 0) {
        throw FormatError(source, "llama.attention.head_count",
                          "heads dividing the embedding length into even head sizes, and KV heads dividing them",
                          std::to_string(c.n_heads) + " heads, " + std::to_string(c.n_kv_heads) + " KV heads, width " +
                              std::to_string(c.dim));
    }
    // A tensor this example would not read (RoPE frequency factors, biases, ...) would change
    // the results llama.cpp gets: refused by name rather than ignored.
    std::unordered_set<std::string> known = {"token_embd.weight", "output_norm.weight", "output.weight"};
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        for (const char* name : {"attn_norm", "ffn_norm"}) known.insert(gguf_block_tensor(l, name));
        for (Projection p : projections) known.insert(gguf_block_tensor(l, gguf_projection_name(p)));
    }
    for (const gguf::TensorInfo& info : file.tensors()) {
        if (!known.contains(info.name)) {
            throw FormatError(source, "tensor " + info.name,
                              "only the tensors this example runs (token_embd, blk.N.attn_norm/attn_q/attn_k/attn_v/"
                              "attn_output/ffn_norm/ffn_gate/ffn_down/ffn_up for N < " +
                                  std::to_string(c.n_layers) + ", output_norm, output)",
                              "a tensor it would ignore");
        }
    }
    if (const auto rope_dims = m.optional_unsigned_integer("llama.rope.dimension_count");
        rope_dims && *rope_dims != c.head_size()) {
        throw FormatError(source, "llama.rope.dimension_count",
                          "the head size " + std::to_string(c.head_size()) + " (partial RoPE is not implemented)",
                          std::to_string(*rope_dims));
    }
    return c;
}

// Whether every projection is Q1_0 (read as Boolean kernels) or none is (read as floats); a
// mix is refused, naming the first projection that differs.
inline GgufProjections gguf_projections(const gguf::File& file, const Config& c) {
    std::optional<bool> q1_0;
    std::string first;
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        for (Projection p : projections) {
            const std::string name = gguf_block_tensor(l, gguf_projection_name(p));
            const bool is_q1_0 = file.tensor(name).type == gguf::TensorType::Q1_0;
            if (!q1_0) {
                q1_0 = is_q1_0;
                first = name;
            } else if (*q1_0 != is_q1_0) {
                throw FormatError(
                    file.path().string(), "tensor " + name,
                    std::string(*q1_0 ? "Q1_0" : "a float or quantized type other than Q1_0") + " like " + first +
                        " (a file's projections are all Q1_0 or none)",
                    std::string(gguf::type_traits(static_cast<std::uint32_t>(file.tensor(name).type))->name));
            }
        }
    }
    return q1_0.value_or(false) ? GgufProjections::q1_0 : GgufProjections::float_weights;
}

// The embedding, final norm and (untied) classifier, with every shape checked.
inline FloatTensors read_gguf_float_tensors(const gguf::File& file, const Config& c) {
    const std::uint64_t dim = c.dim;
    FloatTensors tensors;
    tensors.token_embedding =
        detail::gguf_floats(file, detail::gguf_tensor(file, "token_embd.weight", {dim, c.vocab_size}));
    tensors.rms_final = detail::gguf_floats(file, detail::gguf_tensor(file, "output_norm.weight", {dim}));
    if (!c.shared_classifier) {
        tensors.wcls = detail::gguf_floats(file, detail::gguf_tensor(file, "output.weight", {dim, c.vocab_size}));
    }
    return tensors;
}

// Layer l's RMSNorm weights, "attn_norm" or "ffn_norm".
inline std::vector<float> read_gguf_norm(const gguf::File& file, const Config& c, std::size_t l, const char* name) {
    return detail::gguf_floats(file, detail::gguf_tensor(file, gguf_block_tensor(l, name), {c.dim}));
}

// A file with float (or float-convertible) projections as a Checkpoint, ready to convert.
inline Checkpoint read_gguf_checkpoint(const gguf::File& file) {
    const Config c = read_gguf_config(file);
    if (gguf_projections(file, c) == GgufProjections::q1_0) {
        throw FormatError(file.path().string(), "projections", "float weights to convert",
                          "Q1_0 Boolean kernels (run the file as it is, without --kernels)");
    }
    FloatTensors floats = read_gguf_float_tensors(file, c);
    CheckpointTensors t;
    t.token_embedding = std::move(floats.token_embedding);
    t.rms_final = std::move(floats.rms_final);
    t.wcls = std::move(floats.wcls);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        for (const auto& [name, target] : {std::pair{"attn_norm", &t.rms_att}, std::pair{"ffn_norm", &t.rms_ffn}}) {
            const std::vector<float> norm = read_gguf_norm(file, c, l, name);
            target->insert(target->end(), norm.begin(), norm.end());
        }
    }
    const std::array<std::pair<Projection, std::vector<float>*>, 7> targets = {{{Projection::wq, &t.wq},
                                                                                {Projection::wk, &t.wk},
                                                                                {Projection::wv, &t.wv},
                                                                                {Projection::wo, &t.wo},
                                                                                {Projection::w1, &t.w1},
                                                                                {Projection::w2, &t.w2},
                                                                                {Projection::w3, &t.w3}}};
    for (const auto& [p, target] : targets) {
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const auto& info =
                detail::gguf_tensor(file, gguf_block_tensor(l, gguf_projection_name(p)), detail::gguf_dims(c, p));
            const std::vector<float> values = detail::gguf_floats(file, info);
            target->insert(target->end(), values.begin(), values.end());
        }
    }
    return Checkpoint(c, std::move(t));
}

inline Checkpoint load_gguf_checkpoint(const std::filesystem::path& path) {
    return read_gguf_checkpoint(gguf::File(path));
}

// A file whose projections are Q1_0, as K = 1, G = 128 Boolean kernels with no float detour.
template <class Backend = DefaultBackend>
BooleanTransformer<1, q1_0_block_columns, half, Backend> read_gguf_q1_0_model(const gguf::File& file) {
    using Linear = BooleanLinear<1, q1_0_block_columns, half, Backend>;
    const Config c = read_gguf_config(file);
    if (gguf_projections(file, c) != GgufProjections::q1_0) {
        throw FormatError(file.path().string(), "projections", "Q1_0", "float weights (convert them with --kernels)");
    }
    std::vector<Block<Linear>> blocks(c.n_layers);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        blocks[l].rms_att = read_gguf_norm(file, c, l, "attn_norm");
        blocks[l].rms_ffn = read_gguf_norm(file, c, l, "ffn_norm");
        for (Projection p : projections) {
            const auto& info =
                detail::gguf_tensor(file, gguf_block_tensor(l, gguf_projection_name(p)), detail::gguf_dims(c, p));
            try {
                blocks[l].projection(p) =
                    Linear(q1_0_matrix<std::uint64_t>(file.data(info), info.rows(), info.columns()));
            } catch (const std::invalid_argument& e) {
                throw FormatError(file.path().string(), "tensor " + info.name, "valid Q1_0 blocks", e.what());
            }
        }
    }
    return {c, read_gguf_float_tensors(file, c), std::move(blocks)};
}

// Q1_0 blocks cover 128 inputs: std::invalid_argument (naming `what`) unless every projection's
// input width is a multiple.
inline void check_q1_0_exportable(const Config& c, const std::string& what) {
    for (Projection p : projections) {
        const std::size_t inputs = projection_shape(c, p).second;
        if (inputs % q1_0_block_columns != 0) {
            throw std::invalid_argument(what + ": " + projection_name(p) + " (" + gguf_projection_name(p) + ") has " +
                                        std::to_string(inputs) + " inputs, not a multiple of Q1_0's block of " +
                                        std::to_string(q1_0_block_columns) +
                                        ": GGUF cannot carry this model as Q1_0 (write a .mbool file instead)");
        }
    }
}

// Writes model as a GGUF file that llama.cpp loads: source's metadata and tensors in source's
// order, each projection replaced by the model's Q1_0 blocks (source is the file the model was
// converted from; its other tensors are copied byte for byte). Every projection's input
// dimension must be a multiple of 128, the Q1_0 block.
template <class Backend>
void save_gguf_q1_0_model(const BooleanTransformer<1, q1_0_block_columns, half, Backend>& model,
                          const gguf::File& source, const std::filesystem::path& path) {
    const Config& c = model.config();
    if (read_gguf_config(source) != c) {
        throw std::invalid_argument(path.string() + ": the model's hyperparameters differ from those of " +
                                    source.path().string());
    }
    check_q1_0_exportable(c, path.string());
    // As llama-quantize writes a quantized file: the quantization format version (ggml's
    // GGML_QNT_VERSION, 2), and no general.file_type, which named the source's types (llama.cpp
    // infers the type from the tensors when the key is absent).
    gguf::Metadata metadata = source.metadata();
    metadata.erase("general.file_type");
    metadata.set("general.quantization_version", gguf::Value::uint32(2));
    gguf::Writer writer(std::move(metadata));
    std::unordered_map<std::string, const Q1_0Matrix<>*> kernels;
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        for (Projection p : projections) {
            kernels.emplace(gguf_block_tensor(l, gguf_projection_name(p)), &model.blocks()[l].projection(p).weights());
        }
    }
    for (const gguf::TensorInfo& info : source.tensors()) {
        if (const auto k = kernels.find(info.name); k != kernels.end()) {
            writer.add_tensor(info.name, info.dims, gguf::TensorType::Q1_0, q1_0_blocks(*k->second));
        } else {
            const auto bytes = source.data(info);
            writer.add_tensor(info.name, info.dims, info.type, {bytes.begin(), bytes.end()});
        }
    }
    writer.write(path);
}

}  // namespace multibool::llama
