#pragma once
// Reader for llama2.c's legacy (version 0) checkpoints: 7 int32 header fields, then float32
// arrays, row-major, every matrix shaped [out, in] (y = W x). Layout: shared/assets/README.md.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool::llama {

inline constexpr float llama2c_rope_theta = 10000.0f;
inline constexpr float llama2c_norm_epsilon = 1e-5f;

struct Config {
    std::size_t dim = 0;         // width of the residual stream
    std::size_t hidden_dim = 0;  // width of the feed-forward layer
    std::size_t n_layers = 0;
    std::size_t n_heads = 0;
    std::size_t n_kv_heads = 0;  // fewer than n_heads: grouped-query attention
    std::size_t vocab_size = 0;
    std::size_t seq_len = 0;
    bool shared_classifier = true;  // the classifier is the token embedding (no wcls)
    // llama2.c's fixed values; a GGUF file states its own (llama.rope.freq_base,
    // llama.attention.layer_norm_rms_epsilon).
    float rope_theta = llama2c_rope_theta;
    float norm_epsilon = llama2c_norm_epsilon;

    [[nodiscard]] std::size_t head_size() const noexcept { return n_heads == 0 ? 0 : dim / n_heads; }
    [[nodiscard]] std::size_t kv_dim() const noexcept { return head_size() * n_kv_heads; }
    friend bool operator==(const Config&, const Config&) = default;
};

// The tensors as stored; per-layer ones hold n_layers blocks back to back.
struct CheckpointTensors {
    std::vector<float> token_embedding;  // [vocab, dim]
    std::vector<float> rms_att;          // [layers, dim]
    std::vector<float> wq;               // [layers, dim, dim]
    std::vector<float> wk;               // [layers, kv_dim, dim]
    std::vector<float> wv;               // [layers, kv_dim, dim]
    std::vector<float> wo;               // [layers, dim, dim]
    std::vector<float> rms_ffn;          // [layers, dim]
    std::vector<float> w1;               // [layers, hidden, dim]
    std::vector<float> w2;               // [layers, dim, hidden]
    std::vector<float> w3;               // [layers, hidden, dim]
    std::vector<float> rms_final;        // [dim]
    std::vector<float> wcls;             // [vocab, dim]; empty when the classifier is shared
};

namespace detail {

// One float array of the file: the vector it fills (nullptr: skipped) and its length.
struct StoredArray {
    const char* name;
    std::vector<float>* values;
    std::uint64_t count;
};

// Every float array in file order. Each count is a product of at most three header values,
// all <= 2^20 once validated, so it cannot overflow 64 bits.
inline std::array<StoredArray, 14> stored_arrays(const Config& c, CheckpointTensors& t) {
    const std::uint64_t layers = c.n_layers;
    const std::uint64_t rope_table = std::uint64_t{c.seq_len} * c.head_size() / 2;
    return {{
        {"token_embedding", &t.token_embedding, std::uint64_t{c.vocab_size} * c.dim},
        {"rms_att", &t.rms_att, layers * c.dim},
        {"wq", &t.wq, layers * c.dim * c.dim},
        {"wk", &t.wk, layers * c.kv_dim() * c.dim},
        {"wv", &t.wv, layers * c.kv_dim() * c.dim},
        {"wo", &t.wo, layers * c.dim * c.dim},
        {"rms_ffn", &t.rms_ffn, layers * c.dim},
        {"w1", &t.w1, layers * c.hidden_dim * c.dim},
        {"w2", &t.w2, layers * c.dim * c.hidden_dim},
        {"w3", &t.w3, layers * c.hidden_dim * c.dim},
        {"rms_final", &t.rms_final, c.dim},
        // Legacy RoPE tables: callers compute RoPE themselves.
        {"freq_cis_real", nullptr, rope_table},
        {"freq_cis_imag", nullptr, rope_table},
        {"wcls", &t.wcls, c.shared_classifier ? 0 : std::uint64_t{c.vocab_size} * c.dim},
    }};
}

inline constexpr std::uint64_t header_bytes = 7 * sizeof(std::int32_t);
// Far above any llama2.c model, and small enough that products of three dimensions fit in 64 bits.
inline constexpr std::int64_t max_dimension = std::int64_t{1} << 20;

inline Config read_config(BinaryReader& reader) {
    const std::string& file = reader.source();
    static constexpr std::array<const char*, 7> fields = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                                          "n_kv_heads", "vocab_size", "seq_len"};
    std::array<std::size_t, 7> values{};
    bool shared_classifier = true;
    for (std::size_t f = 0; f < fields.size(); ++f) {
        const std::int64_t found = reader.read<std::int32_t>(fields[f]);
        // A negative vocab_size flags an untied classifier; its magnitude is the vocabulary.
        const bool is_vocab = f == 5;
        const std::int64_t magnitude = is_vocab ? std::abs(found) : found;
        if (magnitude < 1 || magnitude > max_dimension) {
            throw FormatError(
                file, fields[f],
                std::string(is_vocab ? "|value|" : "a value") + " in [1, " + std::to_string(max_dimension) + "]",
                std::to_string(found));
        }
        if (is_vocab) shared_classifier = found > 0;
        values[f] = static_cast<std::size_t>(magnitude);
    }
    const Config c{values[0], values[1], values[2], values[3], values[4], values[5], values[6], shared_classifier};
    if (c.dim % c.n_heads != 0) {
        throw FormatError(file, "n_heads", "a divisor of dim (" + std::to_string(c.dim) + ")",
                          std::to_string(c.n_heads));
    }
    if (c.n_heads % c.n_kv_heads != 0) {
        throw FormatError(file, "n_kv_heads", "a divisor of n_heads (" + std::to_string(c.n_heads) + ")",
                          std::to_string(c.n_kv_heads));
    }
    if (c.head_size() % 2 != 0) {
        throw FormatError(
            file, "head_size", "an even dim / n_heads (RoPE rotates pairs)",
            std::to_string(c.dim) + " / " + std::to_string(c.n_heads) + " = " + std::to_string(c.head_size()));
    }
    return c;
}

}  // namespace detail

// The llama2.c header (also that of multibool's model and fine-tuning files) has no room for
// RoPE's theta or RMSNorm's epsilon: std::invalid_argument, naming `file`, for other values.
inline void check_llama2c_header(const Config& c, const std::string& file) {
    if (c.rope_theta != llama2c_rope_theta || c.norm_epsilon != llama2c_norm_epsilon) {
        throw std::invalid_argument(file + ": the model has RoPE theta " + std::to_string(c.rope_theta) +
                                    " and RMSNorm epsilon " + std::to_string(c.norm_epsilon) +
                                    "; multibool's model and checkpoint files store llama2.c's header, which holds "
                                    "only 10000 and 1e-5");
    }
}

namespace detail {

// The 7 int32 header fields as read_config reads them (negative vocab_size: untied classifier).
inline void write_config(BinaryWriter& w, const Config& c) {
    check_llama2c_header(c, "llama2.c header");
    const std::array<std::int32_t, 7> header = {
        std::int32_t(c.dim),        std::int32_t(c.hidden_dim),
        std::int32_t(c.n_layers),   std::int32_t(c.n_heads),
        std::int32_t(c.n_kv_heads), std::int32_t(c.shared_classifier ? c.vocab_size : -std::int64_t(c.vocab_size)),
        std::int32_t(c.seq_len)};
    w.write(std::span<const std::int32_t>(header));
}

// Reads count float32 values and rejects NaN and Inf, naming the array and the index.
inline std::vector<float> read_finite_floats(BinaryReader& reader, std::size_t count, const std::string& name) {
    std::vector<float> values = reader.read_vector<float>(count, name);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (!std::isfinite(values[i])) {
            throw FormatError(reader.source(), name, "finite float32 values",
                              std::to_string(values[i]) + " at index " + std::to_string(i));
        }
    }
    return values;
}

}  // namespace detail

// A whole model's float weights with views per layer. Sizes always match the config.
class Checkpoint {
public:
    Checkpoint(Config config, CheckpointTensors tensors) : config_(config), tensors_(std::move(tensors)) {
        for (const auto& array : detail::stored_arrays(config_, tensors_)) {
            if (array.values != nullptr && array.values->size() != array.count) {
                throw std::invalid_argument("llama::Checkpoint: tensor " + std::string(array.name) + " holds " +
                                            std::to_string(array.values->size()) + " floats, the config needs " +
                                            std::to_string(array.count));
            }
        }
    }

    [[nodiscard]] const Config& config() const noexcept { return config_; }
    [[nodiscard]] const CheckpointTensors& tensors() const noexcept { return tensors_; }

    [[nodiscard]] MatrixView<const float> token_embedding() const {
        return {std::span<const float>(tensors_.token_embedding), config_.vocab_size, config_.dim};
    }
    // wcls when the checkpoint has one, otherwise the tied token embedding.
    [[nodiscard]] MatrixView<const float> classifier() const {
        if (config_.shared_classifier) return token_embedding();
        return {std::span<const float>(tensors_.wcls), config_.vocab_size, config_.dim};
    }
    [[nodiscard]] std::span<const float> rms_att(std::size_t layer) const {
        return layer_block(tensors_.rms_att, layer, config_.dim);
    }
    [[nodiscard]] std::span<const float> rms_ffn(std::size_t layer) const {
        return layer_block(tensors_.rms_ffn, layer, config_.dim);
    }
    [[nodiscard]] std::span<const float> rms_final() const noexcept { return tensors_.rms_final; }

    [[nodiscard]] MatrixView<const float> wq(std::size_t layer) const {
        return layer_matrix(tensors_.wq, layer, config_.dim, config_.dim);
    }
    [[nodiscard]] MatrixView<const float> wk(std::size_t layer) const {
        return layer_matrix(tensors_.wk, layer, config_.kv_dim(), config_.dim);
    }
    [[nodiscard]] MatrixView<const float> wv(std::size_t layer) const {
        return layer_matrix(tensors_.wv, layer, config_.kv_dim(), config_.dim);
    }
    [[nodiscard]] MatrixView<const float> wo(std::size_t layer) const {
        return layer_matrix(tensors_.wo, layer, config_.dim, config_.dim);
    }
    [[nodiscard]] MatrixView<const float> w1(std::size_t layer) const {
        return layer_matrix(tensors_.w1, layer, config_.hidden_dim, config_.dim);
    }
    [[nodiscard]] MatrixView<const float> w2(std::size_t layer) const {
        return layer_matrix(tensors_.w2, layer, config_.dim, config_.hidden_dim);
    }
    [[nodiscard]] MatrixView<const float> w3(std::size_t layer) const {
        return layer_matrix(tensors_.w3, layer, config_.hidden_dim, config_.dim);
    }

private:
    [[nodiscard]] std::span<const float> layer_block(const std::vector<float>& tensor, std::size_t layer,
                                                     std::size_t size) const {
        if (layer >= config_.n_layers) {
            throw std::out_of_range("llama::Checkpoint: layer " + std::to_string(layer) + " of a " +
                                    std::to_string(config_.n_layers) + "-layer model");
        }
        return std::span<const float>(tensor).subspan(layer * size, size);
    }
    [[nodiscard]] MatrixView<const float> layer_matrix(const std::vector<float>& tensor, std::size_t layer,
                                                       std::size_t rows, std::size_t cols) const {
        return {layer_block(tensor, layer, rows * cols), rows, cols};
    }

    Config config_;
    CheckpointTensors tensors_;
};

// Reads and validates a whole checkpoint; throws FormatError naming the file, the field and
// the expected vs found value, and never returns a partially filled model.
inline Checkpoint load_checkpoint(const std::filesystem::path& path) {
    std::ifstream in = open_for_reading(path);
    const std::string file = path.string();
    std::error_code size_error;
    const std::uint64_t file_bytes = std::filesystem::file_size(path, size_error);
    if (size_error) throw std::runtime_error(file + ": cannot read its size: " + size_error.message());
    if (file_bytes < detail::header_bytes) {
        throw FormatError(file, "header", std::to_string(detail::header_bytes) + " bytes (7 int32)",
                          "a file of " + std::to_string(file_bytes) + " bytes");
    }

    BinaryReader reader(in, file);
    const Config config = detail::read_config(reader);
    CheckpointTensors tensors;
    const auto arrays = detail::stored_arrays(config, tensors);

    // Checking the length first bounds every allocation below by the file's size. 14 counts of
    // at most 2^60 floats each sum without overflow; only the byte count needs a guard.
    std::uint64_t floats = 0;
    for (const auto& array : arrays) floats += array.count;
    constexpr std::uint64_t max_floats =
        (std::numeric_limits<std::uint64_t>::max() - detail::header_bytes) / sizeof(float);
    const std::string found_length = std::to_string(file_bytes) + " bytes";
    if (floats > max_floats) {
        throw FormatError(file, "file length", "the header's " + std::to_string(floats) + " floats (over 2^64 bytes)",
                          found_length);
    }
    const std::uint64_t implied_bytes = detail::header_bytes + floats * sizeof(float);
    if (file_bytes != implied_bytes) {
        throw FormatError(file, "file length", std::to_string(implied_bytes) + " bytes as the header implies",
                          found_length);
    }

    for (const auto& array : arrays) {
        if (array.values == nullptr) {
            reader.skip(static_cast<std::size_t>(array.count) * sizeof(float), array.name);
            continue;
        }
        *array.values = detail::read_finite_floats(reader, static_cast<std::size_t>(array.count), array.name);
    }
    return Checkpoint(config, std::move(tensors));
}

}  // namespace multibool::llama
