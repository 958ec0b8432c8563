#pragma once
// The fine-tuning checkpoint's format (little-endian): magic "MBOOLFTS" | u32 version | u32 K |
// u32 G | llama2.c header (7 int32) | the options that define the run (version 2 appends the two
// schedules, u32 shape + u64 warm-up each, and u64 teacher-written sequences; version 3 the u32
// BOLD accumulator) | u64 teacher and data
// fingerprints | u64 step, u64 planned steps | student float tensors | per projection: its
// BitPlaneMatrix record, flip-policy state, scale AdamW state | float-parameter AdamW states when
// they train | u64 FNV-1a of everything before it. Written to a temporary file and renamed over
// the old one. FineTuner (finetune.hpp) writes and reads the states; this header holds the rest.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/finetune_options.hpp"
#include "llama/model_file.hpp"
#include "multibool/core/binary_io.hpp"

namespace multibool::llama {

inline constexpr std::array<char, 8> fine_tune_magic{'M', 'B', 'O', 'O', 'L', 'F', 'T', 'S'};
// Version 2 added the schedules and the teacher-written sequences, version 3 BOLD's accumulator
// storage; earlier files read as constant schedules, none, and a float accumulator.
inline constexpr std::uint32_t fine_tune_version = 3;
inline constexpr std::uint32_t fine_tune_oldest_version = 1;
// The fields every checkpoint starts with: magic, version, K, G and the llama2.c config.
inline constexpr std::size_t llama2c_config_fields = 7;
inline constexpr std::size_t fine_tune_smallest_header =
    fine_tune_magic.size() + 3 * sizeof(std::uint32_t) + llama2c_config_fields * sizeof(std::int32_t);

// FNV-1a of the ints or floats in order: ties a checkpoint to its teacher and training text.
template <class T>
std::uint64_t fingerprint(std::span<const T> values) {
    Fnv1a hash;
    hash.update(std::as_bytes(values));
    return hash.value();
}

inline std::uint64_t teacher_fingerprint(const Checkpoint& teacher) {
    Fnv1a hash;
    const auto& t = teacher.tensors();
    for (const std::vector<float>* v : {&t.token_embedding, &t.rms_att, &t.wq, &t.wk, &t.wv, &t.wo, &t.rms_ffn, &t.w1,
                                        &t.w2, &t.w3, &t.rms_final, &t.wcls}) {
        hash.update(std::as_bytes(std::span<const float>(*v)));
    }
    return hash.value();
}

inline void write_fine_tune_options(BinaryWriter& w, const FineTuneOptions& o) {
    w.write(static_cast<std::uint32_t>(o.policy));
    w.write(std::uint32_t{o.train_all_kernels});
    w.write(std::uint64_t{o.batch});
    w.write(std::uint64_t{o.length});
    w.write(o.seed);
    w.write(o.resolved_flip_rate());
    w.write(o.scale_learning_rate);
    w.write(std::uint32_t{o.train_float});
    w.write(o.float_learning_rate);
    w.write(o.loss.temperature);
    w.write(o.loss.kl_weight);
    w.write(o.loss.hidden_weight);
    w.write(o.loss.cross_entropy_weight);
    std::uint64_t blocks = 0;
    for (std::size_t l = 0; l < o.loss.hidden_blocks.size(); ++l) blocks |= std::uint64_t{o.loss.hidden_blocks[l]} << l;
    w.write(std::uint64_t{o.loss.hidden_blocks.size()});
    w.write(blocks);
    for (const Schedule& schedule : {o.learning_rate_schedule, o.flip_schedule}) {
        w.write(static_cast<std::uint32_t>(schedule.shape));
        w.write(std::uint64_t{schedule.warmup});
    }
    w.write(std::uint64_t{o.teacher_sequences});
    w.write(static_cast<std::uint32_t>(o.accumulator));
}

namespace detail {

// A bool stored as u32: write_fine_tune_options writes 0 or 1, so any other value is damage.
inline bool read_stored_bool(BinaryReader& r, const char* field) {
    const auto value = r.read<std::uint32_t>(field);
    if (value > 1) throw FormatError(r.source(), field, "0 or 1", std::to_string(value));
    return value == 1;
}

}  // namespace detail

// `version`: the file's; fields it predates take the values a run of that version had.
inline FineTuneOptions read_fine_tune_options(BinaryReader& r, std::uint32_t version) {
    FineTuneOptions o;
    const auto policy = r.read<std::uint32_t>("policy");
    if (policy > static_cast<std::uint32_t>(FlipPolicyKind::bold)) {
        throw FormatError(r.source(), "policy", "0 (expected-improvement) or 1 (bold)", std::to_string(policy));
    }
    o.policy = static_cast<FlipPolicyKind>(policy);
    o.train_all_kernels = detail::read_stored_bool(r, "train_all_kernels");
    o.batch = r.read<std::uint64_t>("batch");
    o.length = r.read<std::uint64_t>("seq");
    o.seed = r.read<std::uint64_t>("seed");
    // The file holds the resolved rate: NaN (the options' "default") is never written.
    o.flip_rate = r.read<double>("flip_rate");
    if (!(o.flip_rate >= 0) || !std::isfinite(o.flip_rate)) {
        throw FormatError(r.source(), "flip_rate", "a finite number >= 0", std::to_string(o.flip_rate));
    }
    o.scale_learning_rate = r.read<float>("scale_learning_rate");
    o.train_float = detail::read_stored_bool(r, "train_float");
    o.float_learning_rate = r.read<float>("float_learning_rate");
    o.loss.temperature = r.read<float>("temperature");
    o.loss.kl_weight = r.read<float>("kl_weight");
    o.loss.hidden_weight = r.read<float>("hidden_weight");
    o.loss.cross_entropy_weight = r.read<float>("cross_entropy_weight");
    const auto count = r.read<std::uint64_t>("hidden block count");
    const auto blocks = r.read<std::uint64_t>("hidden blocks");
    if (count > max_hidden_blocks) {
        throw FormatError(r.source(), "hidden block count", "at most " + std::to_string(max_hidden_blocks),
                          std::to_string(count));
    }
    if (count < max_hidden_blocks && (blocks >> count) != 0) {
        throw FormatError(r.source(), "hidden blocks", "no block beyond the count of " + std::to_string(count),
                          "bits set above it");
    }
    for (std::size_t l = 0; l < count; ++l) o.loss.hidden_blocks.push_back(((blocks >> l) & 1) != 0);
    o.learning_rate_schedule = o.flip_schedule = Schedule{};
    o.teacher_sequences = 0;
    o.accumulator = AccumulatorKind::float32;
    if (version < 2) return o;
    for (Schedule* schedule : {&o.learning_rate_schedule, &o.flip_schedule}) {
        const auto shape = r.read<std::uint32_t>("schedule");
        if (shape > static_cast<std::uint32_t>(ScheduleShape::cosine)) {
            throw FormatError(r.source(), "schedule", "0 (constant), 1 (linear) or 2 (cosine)", std::to_string(shape));
        }
        schedule->shape = static_cast<ScheduleShape>(shape);
        schedule->warmup = r.read<std::uint64_t>("warm-up steps");
    }
    o.teacher_sequences = r.read<std::uint64_t>("teacher-written sequences");
    if (version < 3) return o;
    const auto accumulator = r.read<std::uint32_t>("accumulator");
    if (accumulator > static_cast<std::uint32_t>(AccumulatorKind::int8)) {
        throw FormatError(r.source(), "accumulator", "0 (float), 1 (half) or 2 (int8)", std::to_string(accumulator));
    }
    o.accumulator = static_cast<AccumulatorKind>(accumulator);
    return o;
}

// Whether the file begins with the fine-tuning checkpoint's magic (the rest is not checked here).
inline bool is_fine_tune_checkpoint(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::array<char, fine_tune_magic.size()> magic{};
    in.read(magic.data(), magic.size());
    return in.gcount() == std::streamsize(magic.size()) && magic == fine_tune_magic;
}

// The checkpoint's bytes before its trailing checksum, once the magic and the checksum of the
// whole file are verified: a truncated or damaged checkpoint is refused as such, not as whatever
// field the damage happens to land in.
inline std::string verified_fine_tune_body(const std::filesystem::path& path) {
    const std::string file = path.string();
    std::string bytes;
    {
        std::ifstream in = open_for_reading(path);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (bytes.size() < fine_tune_magic.size() ||
        !std::equal(fine_tune_magic.begin(), fine_tune_magic.end(), bytes.begin())) {
        throw FormatError(file, "magic", "a multibool fine-tuning checkpoint (\"MBOOLFTS\")",
                          bytes.size() < fine_tune_magic.size()
                              ? "a file of " + std::to_string(bytes.size()) + " bytes"
                              : "\"" + bytes.substr(0, fine_tune_magic.size()) + "\"");
    }
    const std::size_t body = std::max(bytes.size(), sizeof(std::uint64_t)) - sizeof(std::uint64_t);
    Fnv1a hash;
    hash.update(std::as_bytes(std::span<const char>(bytes.data(), body)));
    std::uint64_t stored = 0;
    if (bytes.size() >= sizeof stored) std::memcpy(&stored, bytes.data() + body, sizeof stored);
    if (body < fine_tune_smallest_header || stored != hash.value()) {
        throw FormatError(file, "checksum", "the checksum of the first " + std::to_string(body) + " bytes",
                          "a mismatch: the checkpoint is truncated or corrupted");
    }
    bytes.resize(body);
    return bytes;
}

// K and G of a checkpoint, read before choosing the FineTuner instantiation that loads it.
struct FineTuneHeader {
    std::size_t kernels = 0;
    std::size_t group_size = 0;
    std::uint32_t version = 0;  // read, not written: write_fine_tune_header writes the current one
};

inline void write_fine_tune_header(BinaryWriter& w, const FineTuneHeader& header) {
    w.write(std::span<const char>(fine_tune_magic));
    w.write(fine_tune_version);
    w.write(static_cast<std::uint32_t>(header.kernels));
    w.write(static_cast<std::uint32_t>(header.group_size));
}

// The magic, the version, K and G of a verified body; the reader is left at the config.
inline FineTuneHeader read_fine_tune_header(BinaryReader& r) {
    return detail::read_kernels_and_group<FineTuneHeader>(r, fine_tune_magic, fine_tune_oldest_version,
                                                          fine_tune_version);
}

// Verifies the whole file first, so a damaged K or G is reported as damage.
inline FineTuneHeader read_fine_tune_header(const std::filesystem::path& path) {
    std::istringstream in(verified_fine_tune_body(path));
    BinaryReader r(in, path.string());
    return read_fine_tune_header(r);
}

}  // namespace multibool::llama
