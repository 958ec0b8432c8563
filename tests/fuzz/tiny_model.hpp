#pragma once
// The small fixed model the LLaMA fuzz targets start from: seeds are written from it, and the
// fine-tuning target resumes checkpoints against it as their teacher.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.hpp"
#include "llama/checkpoint.hpp"

namespace multibool::fuzz {

inline llama::Config tiny_config(bool shared_classifier = true) {
    return llama::Config{16, 24, 2, 4, 2, 32, 16, shared_classifier};
}

inline llama::Checkpoint tiny_checkpoint(const llama::Config& c) {
    llama::CheckpointTensors t;
    std::uint64_t seed = 1;
    for (auto& array : llama::detail::stored_arrays(c, t)) {
        if (array.values == nullptr) continue;
        const bool norm = std::string(array.name).starts_with("rms");
        *array.values = fixed_floats(array.count, seed++, norm ? 0.1f : 0.5f);
        if (norm) {
            for (float& w : *array.values) w += 1.0f;
        }
    }
    return llama::Checkpoint(c, std::move(t));
}

// The checkpoint as llama2.c writes it: the 7-field header, then every array, the RoPE tables as zeros.
inline std::string llama2c_bytes(const llama::Checkpoint& ckpt) {
    std::ostringstream out;
    BinaryWriter w(out);
    llama::detail::write_config(w, ckpt.config());
    llama::CheckpointTensors t = ckpt.tensors();
    for (const auto& array : llama::detail::stored_arrays(ckpt.config(), t)) {
        if (array.values != nullptr) {
            w.write(std::span<const float>(*array.values));
        } else {
            w.write(std::span<const float>(std::vector<float>(array.count, 0.0f)));
        }
    }
    return out.str();
}

}  // namespace multibool::fuzz
