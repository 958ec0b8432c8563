// Fine-tuning the LLaMA example in the Boolean domain (finetune.hpp): a resumed run reproduces
// the uninterrupted one bit for bit, whatever the thread count; damaged or mismatched
// checkpoints are refused with the reason; and on the shipped model a short K=2 run lowers the
// distillation loss and the validation perplexity of the converted starting point.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "llama/calibration.hpp"
#include "llama/checkpoint.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/cli/progress_bar.hpp"
#include "llama/conversion.hpp"
#include "llama/finetune.hpp"
#include "llama/perplexity.hpp"
#include "llama/teacher_samples.hpp"
#include "llama/tokenizer.hpp"
#include "llama_test_support.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace multibool;
using namespace multibool::llama;
using Catch::Matchers::Contains;

constexpr std::size_t K = 2;
constexpr std::size_t G = 8;
using Tuner = FineTuner<K, G>;

Config tiny_config() { return Config{16, 24, 2, 4, 2, 32, 16, true}; }

std::vector<int> random_tokens(std::size_t n, std::size_t vocab, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> dist(0, int(vocab) - 1);
    std::vector<int> tokens(n);
    for (auto& t : tokens) t = dist(rng);
    return tokens;
}

std::string file_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A scratch folder removed at the end of the test.
struct ScratchFolder {
    fs::path path = fs::temp_directory_path() / ("multibool-finetune-" + std::to_string(std::random_device{}()));
    ScratchFolder() { fs::create_directories(path); }
    ~ScratchFolder() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
};

FineTuneOptions small_run(FlipPolicyKind policy, bool train_float) {
    FineTuneOptions o;
    o.policy = policy;
    o.batch = 3;
    o.length = 8;
    o.seed = 11;
    o.flip_rate = policy == FlipPolicyKind::bold ? 50.0 : 0.2;  // large, so that bits do flip in a few steps
    o.scale_learning_rate = 1e-3f;
    o.train_float = train_float;
    o.float_learning_rate = 1e-3f;
    o.loss.cross_entropy_weight = 0.5f;
    o.loss.hidden_blocks = {true, false};
    // Constant rates and text windows only, whatever the defaults (tests below vary them).
    o.learning_rate_schedule = o.flip_schedule = Schedule{};
    o.teacher_sequences = 0;
    return o;
}

// A seeded tiny teacher, its training text, and a BOLD run with float training on them.
struct SeededRun {
    explicit SeededRun(std::uint64_t seed)
        : rng(seed),
          teacher(testing::random_checkpoint(tiny_config(), rng)),
          train(random_tokens(400, tiny_config().vocab_size, rng)),
          tuner(teacher, convert<K, G, float, ExactBackend>(teacher).first, train,
                small_run(FlipPolicyKind::bold, true)) {}
    std::mt19937_64 rng;
    Checkpoint teacher;
    std::vector<int> train;
    Tuner tuner;
};

// A checkpoint body followed by its whole-file checksum, as FineTuner::save ends a file.
std::string with_checksum(std::string body) {
    Fnv1a hash;
    hash.update(std::as_bytes(std::span<const char>(body)));
    const std::uint64_t checksum = hash.value();
    body.append(reinterpret_cast<const char*>(&checksum), sizeof checksum);
    return body;
}

}  // namespace

TEST_CASE("a resumed fine-tuning run is bit-identical to the uninterrupted one", "[llama][finetune]") {
    const auto seed = testing::fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const Checkpoint teacher = testing::random_checkpoint(tiny_config(), rng);
    const std::vector<int> train = random_tokens(400, tiny_config().vocab_size, rng);
    const auto student = [&] { return convert<K, G, float, ExactBackend>(teacher).first; };
    ScratchFolder folder;

    using Accumulator = AccumulatorKind;
    for (const auto& [policy, accumulator] :
         {std::pair{FlipPolicyKind::expected_improvement, Accumulator::float32},
          std::pair{FlipPolicyKind::bold, Accumulator::float32}, std::pair{FlipPolicyKind::bold, Accumulator::float16},
          std::pair{FlipPolicyKind::bold, Accumulator::int8}}) {
        for (const bool train_float : {false, true}) {
            CAPTURE(flip_policy_name(policy), accumulator_name(accumulator), train_float);
            FineTuneOptions options = small_run(policy, train_float);
            options.accumulator = accumulator;
            if (train_float) {
                // Schedules whose warm-up ends at step 4, so that the resumed steps 3..5 cross the
                // change of phase, and a batch that mixes text windows with teacher-written sequences.
                options.learning_rate_schedule = {ScheduleShape::cosine, 4};
                options.flip_schedule = {ScheduleShape::linear, 4};
                options.teacher_sequences = 2;
            }
            const fs::path whole = folder.path / "whole.ckpt", split = folder.path / "split.ckpt";

            Tuner uninterrupted(teacher, student(), train, options);
            uninterrupted.set_planned_steps(6);
            std::size_t flips = 0;
            for (int s = 0; s < 6; ++s) flips += uninterrupted.step(2).flips.flips();
            CHECK(flips > 0);  // the comparison below covers flipped bits, not only scales
            uninterrupted.save(whole);

            Tuner first_half(teacher, student(), train, options);
            first_half.set_planned_steps(6);
            for (int s = 0; s < 3; ++s) first_half.step(1);
            first_half.save(split);
            Tuner resumed = Tuner::load(split, teacher, train);
            CHECK(resumed.steps_done() == 3);
            CHECK(resumed.planned_steps() == 6);
            for (int s = 0; s < 3; ++s) resumed.step(3);  // another thread count too
            resumed.save(split);

            REQUIRE(file_bytes(whole).size() > 0);
            CHECK(file_bytes(whole) == file_bytes(split));
        }
    }
}

TEST_CASE("damaged or mismatched fine-tuning checkpoints are refused", "[llama][finetune]") {
    SeededRun run(5);
    const Checkpoint& teacher = run.teacher;
    const std::vector<int>& train = run.train;
    Tuner& tuner = run.tuner;
    ScratchFolder folder;
    const fs::path path = folder.path / "run.ckpt";
    tuner.step(1);
    tuner.save(path);
    const std::string good = file_bytes(path);
    REQUIRE_NOTHROW(Tuner::load(path, teacher, train));

    SECTION("truncated") {
        for (const std::size_t keep : {good.size() - 1, good.size() / 2, std::size_t{12}}) {
            write_bytes(path, good.substr(0, keep));
            CHECK_THROWS_WITH(Tuner::load(path, teacher, train), Contains("truncated or corrupted"));
        }
        write_bytes(path, good.substr(0, 3));
        CHECK_THROWS_WITH(Tuner::load(path, teacher, train), Contains("a file of 3 bytes"));
    }
    SECTION("a flipped byte anywhere") {
        for (const std::size_t at : {std::size_t{20}, good.size() / 3, good.size() - 3}) {
            std::string bad = good;
            bad[at] = char(bad[at] ^ 0x10);
            write_bytes(path, bad);
            CHECK_THROWS_WITH(Tuner::load(path, teacher, train), Contains("truncated or corrupted"));
        }
    }
    SECTION("not a checkpoint") {
        write_bytes(path, "MBOOLLLM and then some other file");
        CHECK_THROWS_WITH(Tuner::load(path, teacher, train), Contains("MBOOLFTS"));
    }
    SECTION("another K, teacher or training text") {
        using OtherK = FineTuner<3, G>;
        CHECK_THROWS_WITH(OtherK::load(path, teacher, train), Contains("'kernels': expected 3, found 2"));
        const Checkpoint other = testing::random_checkpoint(tiny_config(), run.rng);
        CHECK_THROWS_WITH(Tuner::load(path, other, train), Contains("teacher fingerprint"));
        std::vector<int> changed = train;
        changed[7] = (changed[7] + 1) % int(tiny_config().vocab_size);
        CHECK_THROWS_WITH(Tuner::load(path, teacher, changed), Contains("training-text fingerprint"));
    }
    SECTION("a write that fails midway leaves the last good checkpoint and no temporary file") {
        // save() writes through write_file_atomically; here the writer fails after half the bytes.
        CHECK_THROWS_WITH(write_file_atomically(path,
                                                [&](std::ostream& out) {
                                                    out.write(good.data(), std::streamsize(good.size() / 2));
                                                    throw std::runtime_error("disk full");
                                                }),
                          Contains("disk full"));
        CHECK(file_bytes(path) == good);
        CHECK(std::distance(fs::directory_iterator(folder.path), fs::directory_iterator()) == 1);
        tuner.step(1);
        tuner.save(path);  // and a later save replaces it whole
        CHECK(file_bytes(path) != good);
        CHECK(Tuner::load(path, teacher, train).steps_done() == 2);
    }
}

TEST_CASE("the flip policy is named as in the library, its earlier name still read", "[llama][finetune]") {
    CHECK(std::string(flip_policy_name(FlipPolicyKind::expected_improvement)) == "expected-improvement");
    CHECK(parse_flip_policy("expected-improvement") == FlipPolicyKind::expected_improvement);
    CHECK(parse_flip_policy("stochastic") == FlipPolicyKind::expected_improvement);
    CHECK(parse_flip_policy("bold") == FlipPolicyKind::bold);
    CHECK_FALSE(parse_flip_policy("expected_improvement").has_value());

    // Checkpoints store the policy's code, right after the header; the codes of the binary that
    // called the policy "stochastic" (0) and "bold" (1) stay, so its checkpoints still load.
    std::mt19937_64 rng(9);
    const Checkpoint teacher = testing::random_checkpoint(tiny_config(), rng);
    const std::vector<int> train = random_tokens(400, tiny_config().vocab_size, rng);
    ScratchFolder folder;
    for (const auto& [policy, code] :
         {std::pair{FlipPolicyKind::expected_improvement, '\0'}, std::pair{FlipPolicyKind::bold, '\1'}}) {
        const fs::path path = folder.path / "policy.ckpt";
        Tuner(teacher, convert<K, G, float, ExactBackend>(teacher).first, train, small_run(policy, false)).save(path);
        const std::string bytes = file_bytes(path);
        CHECK(bytes.substr(fine_tune_smallest_header, 4) == std::string{code, '\0', '\0', '\0'});
        CHECK(Tuner::load(path, teacher, train).options().policy == policy);
    }
}

TEST_CASE("stored options no run writes are refused, naming the field", "[llama][finetune]") {
    SeededRun run(8);
    const Checkpoint& teacher = run.teacher;
    const std::vector<int>& train = run.train;
    const Tuner& tuner = run.tuner;
    ScratchFolder folder;
    const fs::path path = folder.path / "run.ckpt";
    tuner.save(path);
    const std::string good = file_bytes(path);
    // The options start after the header; offsets as write_fine_tune_options lays them out.
    const auto forged = [&](std::size_t offset, const auto value) {
        std::string bytes = good.substr(0, good.size() - 8);
        std::memcpy(bytes.data() + fine_tune_smallest_header + offset, &value, sizeof value);
        write_bytes(path, with_checksum(std::move(bytes)));
        return path;
    };
    CHECK_THROWS_WITH(Tuner::load(forged(4, std::uint32_t{2}), teacher, train),
                      Contains("'train_all_kernels': expected 0 or 1, found 2"));
    CHECK_THROWS_WITH(Tuner::load(forged(44, std::uint32_t{7}), teacher, train),
                      Contains("'train_float': expected 0 or 1, found 7"));
    CHECK_THROWS_WITH(Tuner::load(forged(32, std::numeric_limits<double>::quiet_NaN()), teacher, train),
                      Contains("'flip_rate': expected a finite number >= 0"));
    // Two hidden blocks stored (small_run's); a third bit set beyond them.
    CHECK_THROWS_WITH(Tuner::load(forged(76, std::uint64_t{0b101}), teacher, train),
                      Contains("'hidden blocks'") && Contains("bits set above"));
    // A batch whose buffers fit in a size_t but in no machine (found by the fine_tune_checkpoint
    // fuzz target): refused on resume as on a new run, not by std::bad_alloc.
    CHECK_THROWS_WITH(Tuner::load(forged(8, std::uint64_t{100'000'000'000}), teacher, train),
                      Contains("GiB of buffers"));
    REQUIRE_NOTHROW(Tuner::load(forged(4, std::uint32_t{0}), teacher, train));
}

TEST_CASE("checkpoints of earlier format versions load with the values their runs had", "[llama][finetune]") {
    std::mt19937_64 rng(21);
    const Checkpoint teacher = testing::random_checkpoint(tiny_config(), rng);
    const std::vector<int> train = random_tokens(400, tiny_config().vocab_size, rng);
    ScratchFolder folder;
    const fs::path current = folder.path / "current.ckpt", earlier = folder.path / "earlier.ckpt";
    Tuner tuner(teacher, convert<K, G, float, ExactBackend>(teacher).first, train,
                small_run(FlipPolicyKind::bold, true));
    tuner.step(1);
    tuner.save(current);
    const std::string bytes = file_bytes(current);
    // Version 3 options: version 1's 84 bytes, then version 2's 32 (two schedules of u32 shape +
    // u64 warm-up, u64 teacher sequences), then version 3's u32 accumulator.
    const std::size_t fields = fine_tune_smallest_header + 84;
    const auto rewritten = [&](char version, std::size_t kept, std::size_t dropped) {
        std::string old = bytes.substr(0, fields + kept) +
                          bytes.substr(fields + kept + dropped, bytes.size() - fields - kept - dropped - 8);
        old[fine_tune_magic.size()] = version;
        return with_checksum(std::move(old));
    };
    for (const auto& [version, kept, dropped] :
         {std::tuple<char, std::size_t, std::size_t>{'\1', 0, 36}, {'\2', 32, 4}}) {
        CAPTURE(int(version));
        write_bytes(earlier, rewritten(version, kept, dropped));
        Tuner loaded = Tuner::load(earlier, teacher, train);
        CHECK(loaded.options().learning_rate_schedule == Schedule{});
        CHECK(loaded.options().flip_schedule == Schedule{});
        CHECK(loaded.options().teacher_sequences == 0);
        CHECK(loaded.options().accumulator == AccumulatorKind::float32);
        loaded.save(earlier);  // written back in the current format: the same file
        CHECK(file_bytes(earlier) == bytes);
    }

    write_bytes(earlier, rewritten('\4', 36, 0));
    CHECK_THROWS_WITH(Tuner::load(earlier, teacher, train), Contains("field 'version': expected 1..3, found 4"));
}

TEST_CASE("teacher-written sequences follow the teacher's distribution, whatever the thread count",
          "[llama][finetune]") {
    // Inverse-CDF sampling, worked by hand: softmax(0, ln 3) = (1/4, 3/4).
    const std::vector<float> two{0.0f, float(std::log(3.0))};
    CHECK(sample_softmax(two, 0.0) == 0);
    CHECK(sample_softmax(two, 0.2) == 0);
    CHECK(sample_softmax(two, 0.3) == 1);
    CHECK(sample_softmax(two, 0.999) == 1);

    // An untied classifier with small weights: a tied random model mostly repeats its input
    // token, which would leave little to sample.
    std::mt19937_64 rng(17);
    Config untied = tiny_config();
    untied.shared_classifier = false;
    CheckpointTensors tensors = testing::random_checkpoint(untied, rng).tensors();
    for (float& w : tensors.wcls) w *= 0.2f;
    const Checkpoint checkpoint(untied, std::move(tensors));
    const auto teacher = Transformer<DenseLinear>::from_checkpoint(
        checkpoint, [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); });
    constexpr std::size_t batch = 4, length = 12;
    const auto written = [&](std::size_t step, std::size_t threads) {
        std::vector<int> inputs(batch * length, -1), targets(batch * length, -1);
        write_teacher_sequences(teacher, 5, step, 1, 3, length, inputs, targets, threads);
        return std::pair{inputs, targets};
    };
    const auto [inputs, targets] = written(7, 1);
    CHECK(written(7, 3) == written(7, 1));
    CHECK(written(8, 1) != written(7, 1));
    for (std::size_t t = 0; t < length; ++t) CHECK(inputs[t] == -1);  // sequence 0 untouched
    for (std::size_t b = 1; b < batch; ++b) {
        const std::span<const int> in(inputs.data() + b * length, length);
        CHECK(in[0] == Tokenizer::bos);
        for (std::size_t t = 0; t + 1 < length; ++t) CHECK(in[t + 1] == targets[b * length + t]);
        // Each token is the inverse-CDF draw from the teacher's distribution after the prefix,
        // recomputed here through the batch (GEMM) path over the whole sequence.
        Session session(teacher.config(), length);
        const SessionLogits logits = teacher.forward(in, 0, session);
        for (std::size_t t = 0; t < length; ++t) {
            CHECK(targets[b * length + t] == sample_softmax(logits.row(t), teacher_sample_draw(5, 7, b, t)));
        }
    }
    std::vector<int> small(length);
    CHECK_THROWS_AS(write_teacher_sequences(teacher, 5, 7, 0, 2, length, small, small, 1), std::invalid_argument);
}

TEST_CASE("fine-tuning options are checked", "[llama][finetune]") {
    std::mt19937_64 rng(3);
    const Checkpoint teacher = testing::random_checkpoint(tiny_config(), rng);
    const std::vector<int> train = random_tokens(400, tiny_config().vocab_size, rng);
    const auto attempt = [&](FineTuneOptions o) {
        return Tuner(teacher, convert<K, G, float, ExactBackend>(teacher).first, train, o);
    };
    FineTuneOptions o = small_run(FlipPolicyKind::expected_improvement, false);
    o.length = 17;
    CHECK_THROWS_WITH(attempt(o), Contains("seq must be 2..16"));
    o = small_run(FlipPolicyKind::expected_improvement, false);
    o.loss.kl_weight = o.loss.hidden_weight = o.loss.cross_entropy_weight = 0;
    CHECK_THROWS_WITH(attempt(o), Contains("every loss weight is 0"));
    o = small_run(FlipPolicyKind::expected_improvement, false);
    o.flip_rate = -1;
    CHECK_THROWS_WITH(attempt(o), Contains("flip rate"));
    o = small_run(FlipPolicyKind::expected_improvement, false);
    o.teacher_sequences = 4;
    CHECK_THROWS_WITH(attempt(o), Contains("at most the batch's 3 sequences, not 4"));
    // A decaying schedule runs over the planned steps, so it needs them.
    o = small_run(FlipPolicyKind::bold, false);
    o.learning_rate_schedule.shape = ScheduleShape::cosine;
    Tuner unplanned = attempt(o);
    CHECK_THROWS_WITH(unplanned.step(1), Contains("set_planned_steps"));
    const std::vector<int> short_text(7, 1);
    CHECK_THROWS_WITH(Tuner(teacher, convert<K, G, float, ExactBackend>(teacher).first, short_text,
                            small_run(FlipPolicyKind::expected_improvement, false)),
                      Contains("needs at least 8"));
}

TEST_CASE("a short K=2 fine-tuning of the shipped model lowers the loss and the validation perplexity",
          "[llama][finetune][assets]") {
    if (!testing::assets_present("stories260K.bin") || !testing::assets_present("tinystories-train.txt") ||
        !testing::assets_present("tinystories-valid.txt")) {
        return;
    }
    const fs::path assets = examples::assets_dir();
    const Checkpoint teacher = load_checkpoint(assets / "stories260K.bin");
    const Tokenizer tokenizer = load_tokenizer(assets / "tok512.bin");
    const auto encode = [&](const char* file) {
        std::ifstream in(assets / file, std::ios::binary);
        return tokenizer.encode(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()),
                                false, false);
    };
    const std::vector<int> train = encode("tinystories-train.txt");
    const std::vector<int> valid = encode("tinystories-valid.txt");
    const CalibrationStatistics calibration = calibrate(teacher, train, cli::default_calibration_tokens);
    ConversionOptions conversion;
    conversion.initializer = Initializer::activation_aware;
    conversion.calibration = std::cref(calibration);
    FineTuneOptions options;  // the CLI's defaults
    options.seed = 3;
    FineTuner<2, 64> tuner(teacher, convert<2, 64, float, ExactBackend>(teacher, conversion).first, train, options);
    const double before = perplexity(tuner.student(), valid, 2).perplexity();

    constexpr int steps = 40;
    tuner.set_planned_steps(steps);
    std::vector<double> losses;
    for (int s = 0; s < steps; ++s) losses.push_back(tuner.step(2).loss.total);
    const double after = perplexity(tuner.student(), valid, 2).perplexity();
    const auto mean = [](auto first, auto last) { return std::accumulate(first, last, 0.0) / double(last - first); };
    const double early = mean(losses.begin(), losses.begin() + 5);
    const double late = mean(losses.end() - 5, losses.end());
    INFO("validation perplexity " << before << " -> " << after << "; loss (mean of 5 steps) " << early << " -> "
                                  << late);
    CHECK(late < 0.9 * early);
    CHECK(after < 0.9 * before);
}

TEST_CASE("the progress line's ETA is m:ss, and a dash for NaN or a time no conversion can hold", "[llama][finetune]") {
    using cli::clock_text;
    CHECK(clock_text(0.0) == "0:00");
    CHECK(clock_text(61.9) == "1:01");
    CHECK(clock_text(-3.0) == "0:00");
    CHECK(clock_text(36000.0) == "600:00");
    // finetune --steps 18446744073709551615: about 1e19 steps of 0.3 s each.
    CHECK(clock_text(5.5e18) == "--:--");
    CHECK(clock_text(std::numeric_limits<double>::infinity()) == "--:--");
    CHECK(clock_text(std::numeric_limits<double>::quiet_NaN()) == "--:--");
}

TEST_CASE("a batch whose token count wraps is refused before any buffer is sized", "[llama][finetune]") {
    FineTuneOptions o = small_run(FlipPolicyKind::bold, false);
    o.batch = 4611686018427387905u;  // x 4 tokens = 2^64 + 4: wraps to 4
    o.length = 4;
    CHECK_THROWS_WITH(check_fine_tune_options(o, tiny_config()),
                      Contains("batch x seq = 4611686018427387905 x 4 tokens per step"));
    o.batch = 3;
    CHECK(step_bytes(o, tiny_config()) > 0);
}

TEST_CASE("the default thread count is every hardware thread, up to the most --threads takes", "[llama][cli]") {
    const cli::Command command{"test", "", "", {{"threads", "N", "threads"}}};
    std::vector<char*> none;
    const cli::ParsedOptions defaults(command, none);
    CHECK(cli::thread_count(defaults, 0) == 1);  // hardware_concurrency() may not know
    CHECK(cli::thread_count(defaults, 8) == 8);
    CHECK(cli::thread_count(defaults, 1000) == cli::max_threads);
    std::string flag = "--threads", value = "257";
    std::vector<char*> given{flag.data(), value.data()};
    CHECK_THROWS_WITH(cli::thread_count(cli::ParsedOptions(command, given), 8), Contains("--threads takes 1..256"));
}
