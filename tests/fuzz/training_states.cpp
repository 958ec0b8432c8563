// Fuzz targets for what a fine-tuning run saves: each optimizer's read_state, and the whole
// fine-tuning checkpoint. A state that reads must write back the bytes it was read from; a
// checkpoint that resumes must take a step, save, and resume again to the same next step.
#include <cstdint>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <multibool/core/half.hpp>
#include <multibool/training/adamw.hpp>
#include <multibool/training/bold_policy.hpp>
#include <multibool/training/expected_improvement_policy.hpp>
#include <multibool/training/scale_adamw.hpp>

#include "fuzz/fuzz_target.hpp"
#include "fuzz/tiny_model.hpp"
#include "llama/conversion.hpp"
#include "llama/finetune.hpp"
#include "llama/finetune_checkpoint.hpp"

namespace multibool::fuzz {
namespace {

using namespace multibool::llama;

// The shapes every optimizer is made for: a 2-kernel 5 x 20 matrix in groups of 8 (3 per row).
constexpr std::size_t kernels = 2, rows = 5, cols = 20, groups = 3, parameters = 37;

template <class Optimizer, class Make>
bool read_write(std::string_view bytes, Make make) {
    Optimizer optimizer = make();
    std::istringstream in{std::string(bytes)};
    BinaryReader reader(in, "input");
    try {
        optimizer.read_state(reader);
    } catch (const FormatError&) {
        return false;
    }
    std::ostringstream out;
    BinaryWriter writer(out);
    optimizer.write_state(writer);
    require(out.str() == bytes.substr(0, out.str().size()) && out.str().size() == reader.offset(),
            "a state read back writes other bytes than it was read from");
    return true;
}

// The first byte chooses the optimizer; the rest is its state.
bool optimizer_state(Bytes input) {
    if (input.empty()) return false;
    const std::string state = text_of(input.subspan(1));
    const auto bold = [](auto storage) {
        return [] { return BoldPolicy<decltype(storage)>(kernels, rows, cols, {2.0, TrainableKernels::all()}); };
    };
    switch (input[0] % 6) {
        case 0:
            return read_write<BoldPolicy<float>>(state, bold(float{}));
        case 1:
            return read_write<BoldPolicy<half>>(state, bold(half{}));
        case 2:
            return read_write<BoldPolicy<std::int8_t>>(state, bold(std::int8_t{}));
        case 3:
            return read_write<ExpectedImprovementPolicy>(state, [] { return ExpectedImprovementPolicy(); });
        case 4:
            return read_write<ScaleAdamW<kernels>>(state, [] { return ScaleAdamW<kernels>(rows, groups, {1e-3f}); });
        default:
            return read_write<AdamW>(state, [] { return AdamW(parameters, {1e-3f}); });
    }
}

// Each optimizer's state after two steps on fixed gradients, behind its selector byte.
std::vector<Seed> optimizer_seeds() {
    std::vector<Seed> seeds;
    const auto add = [&](const char* name, char selector, const auto& optimizer) {
        std::ostringstream out;
        BinaryWriter writer(out);
        optimizer.write_state(writer);
        seeds.push_back({name, selector + out.str()});
    };
    BitPlaneMatrix<kernels, 8> m(rows, cols);
    const auto gradient = fixed_floats(rows * cols, 9, 1.0f);
    BoldPolicy<float> bold_float(m, {2.0, TrainableKernels::all()});
    BoldPolicy<half> bold_half(m, {2.0, TrainableKernels::all()});
    BoldPolicy<std::int8_t> bold_int8(m, {2.0, TrainableKernels::all()});
    add("bold-float-zero", 0, bold_float);
    add("bold-half-zero", 1, bold_half);
    add("bold-int8-zero", 2, bold_int8);
    add("expected-improvement", 3, ExpectedImprovementPolicy());
    ScaleAdamW<kernels> scales(rows, groups, {1e-3f});
    add("scale-adamw-zero", 4, scales);
    AdamW adamw(parameters, {1e-3f});
    std::vector<float> values = fixed_floats(parameters, 10, 1.0f);
    adamw.step(values, fixed_floats(parameters, 11, 1.0f));
    add("adamw-one-step", 5, adamw);
    return seeds;
}

// The fine-tuning checkpoint, resumed against the tiny teacher: the input is the checkpoint's body
// and the harness appends its checksum (the file's whole-body FNV-1a), so mutations reach every field.
constexpr std::size_t tuned_kernels = 2, tuned_group = 8;
using Tuner = FineTuner<tuned_kernels, tuned_group>;

const Checkpoint& teacher() {
    static const Checkpoint ckpt = tiny_checkpoint(tiny_config());
    return ckpt;
}

std::vector<int> training_tokens() {
    std::vector<int> tokens(64);
    for (std::size_t t = 0; t < tokens.size(); ++t) tokens[t] = int(t * 7 % tiny_config().vocab_size);
    return tokens;
}

std::string with_checksum(std::string body) {
    Fnv1a hash;
    hash.update(std::as_bytes(std::span<const char>(body)));
    const std::uint64_t sum = hash.value();
    body.append(reinterpret_cast<const char*>(&sum), sizeof sum);
    return body;
}

std::string without_checksum(std::string file) {
    file.resize(file.size() - sizeof(std::uint64_t));
    return file;
}

constexpr std::size_t harness_step_bytes = std::size_t{256} << 20;

bool fine_tune_checkpoint(Bytes input) {
    const ScratchFile scratch;
    std::optional<Tuner> tuner;
    try {
        const auto& path = scratch.write(with_checksum(text_of(input)));
        // The reader accepts any step that fits in the machine's memory (check_fine_tune_options),
        // far more than libFuzzer's RSS limit: such runs are accepted here without being built.
        const auto run = Tuner::read_run(path);
        if (llama::step_bytes(run.options, run.student.config()) > harness_step_bytes) return true;
        tuner.emplace(Tuner::load(path, teacher(), training_tokens()));
    } catch (const FormatError&) {
        return false;
    }
    // Small runs only: a checkpoint may ask for a batch that fits but would take minutes.
    if (tuner->options().batch * tuner->options().length > 64) return true;
    bool stepped = false;
    allowing_overflow_refusal([&] {
        tuner->step(1);
        stepped = true;
    });
    if (!stepped) return true;
    tuner->save(scratch.path());
    const std::string saved = scratch.read();
    Tuner resumed = Tuner::load(scratch.path(), teacher(), training_tokens());
    resumed.save(scratch.path());
    require(scratch.read() == saved, "a saved checkpoint resumes to another state");
    return true;
}

std::vector<Seed> fine_tune_seeds() {
    std::vector<Seed> seeds;
    for (const auto policy : {FlipPolicyKind::bold, FlipPolicyKind::expected_improvement}) {
        FineTuneOptions o;
        o.policy = policy;
        o.batch = 2;
        o.length = 8;
        o.teacher_sequences = 1;
        Tuner tuner(teacher(), convert<tuned_kernels, tuned_group, float, ExactBackend>(teacher()).first,
                    training_tokens(), o);
        tuner.set_planned_steps(4);
        tuner.step(1);
        const ScratchFile scratch;
        tuner.save(scratch.path());
        seeds.push_back({std::string(flip_policy_name(policy)), without_checksum(scratch.read())});
    }
    return seeds;
}

const Registration optimizer_target{"optimizer_state", optimizer_state, optimizer_seeds};
const Registration fine_tune_target{"fine_tune_checkpoint", fine_tune_checkpoint, fine_tune_seeds};

}  // namespace
}  // namespace multibool::fuzz
