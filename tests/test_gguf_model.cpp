// LLaMA models from GGUF files: llama.cpp's own conversion of stories260K gives the logits of the
// llama2.c checkpoint, a Q1_0 export reloads as the same kernels and writes back byte for byte,
// and files the example cannot run are refused by name.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "llama/conversion.hpp"
#include "llama/gguf_model.hpp"
#include "llama/transformer.hpp"
#include "llama_gguf_fixture.hpp"
#include "llama_test_support.hpp"
#include "multibool/core/gguf_file.hpp"
#include "multibool/core/gguf_writer.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace multibool;
using namespace multibool::llama;
using Catch::Matchers::Contains;
using testing::float_model;

fs::path asset(const char* name) { return examples::assets_dir() / name; }

std::vector<int> some_tokens(std::size_t n, std::size_t vocab, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> dist(0, int(vocab) - 1);
    std::vector<int> tokens(n);
    for (int& t : tokens) t = dist(rng);
    return tokens;
}

template <LinearLayer Linear>
std::vector<float> all_logits(const Transformer<Linear>& model, const std::vector<int>& tokens) {
    Session session(model.config(), tokens.size());
    const SessionLogits logits = model.forward(tokens, 0, session, Logits::all);
    return {logits.data().begin(), logits.data().end()};
}

// The fixture rewritten with one metadata key set.
void rewrite_key(const fs::path& from, const fs::path& to, const std::string& key, gguf::Value value) {
    const gguf::File source(from);
    gguf::Metadata metadata = source.metadata();
    metadata.set(key, std::move(value));
    gguf::Writer writer(metadata);
    for (const gguf::TensorInfo& info : source.tensors()) {
        const auto data = source.data(info);
        writer.add_tensor(info.name, info.dims, info.type, {data.begin(), data.end()});
    }
    writer.write(to);
}

// The fixture rewritten with one tensor replaced (same name, new dims, type and bytes).
void rewrite_tensor(const fs::path& from, const fs::path& to, const std::string& name, std::vector<std::uint64_t> dims,
                    gguf::TensorType type, std::vector<std::byte> bytes) {
    const gguf::File source(from);
    gguf::Writer writer(source.metadata());
    for (const gguf::TensorInfo& info : source.tensors()) {
        if (info.name == name) {
            writer.add_tensor(info.name, dims, type, bytes);
        } else {
            const auto data = source.data(info);
            writer.add_tensor(info.name, info.dims, info.type, {data.begin(), data.end()});
        }
    }
    writer.write(to);
}

}  // namespace

TEST_CASE("stories260K: llama.cpp's GGUF conversion gives the llama2.c checkpoint's logits", "[llama][gguf][assets]") {
    if (!testing::assets_present("stories260K.bin") || !testing::assets_present("gguf/stories260K-f32.gguf") ||
        !testing::assets_present("gguf/stories260K-f16.gguf")) {
        return;
    }
    const Checkpoint bin = load_checkpoint(asset("stories260K.bin"));
    const Checkpoint f32 = load_gguf_checkpoint(asset("gguf/stories260K-f32.gguf"));
    // Same hyperparameters but the context: llama.cpp's converter writes 128 (llama2.c's header says 512).
    Config expected = bin.config();
    expected.seq_len = 128;
    CHECK(f32.config() == expected);
    const std::vector<int> tokens = some_tokens(300, bin.config().vocab_size, 11);
    const std::vector<float> reference = all_logits(float_model(bin), tokens);
    CHECK(all_logits(float_model(f32), tokens) == reference);

    // F16 weights: the same model up to fp16 rounding of the weights.
    const std::vector<float> f16 =
        all_logits(float_model(load_gguf_checkpoint(asset("gguf/stories260K-f16.gguf"))), tokens);
    double diff = 0.0;
    double scale = 0.0;
    for (std::size_t e = 0; e < reference.size(); ++e) {
        diff = std::max(diff, std::fabs(double(f16[e]) - double(reference[e])));
        scale = std::max(scale, std::fabs(double(reference[e])));
    }
    CAPTURE(diff, scale);
    CHECK(diff > 0.0);
    CHECK(diff < 1e-2 * scale);
}

TEST_CASE("a Q1_0 GGUF export reloads as the same kernels and writes back byte for byte", "[llama][gguf]") {
    const testing::TempDir dir;
    const fs::path source = dir.path() / "float.gguf";
    testing::write_llama_gguf(source, {}, testing::fresh_seed());
    const gguf::File source_file(source);
    const Checkpoint checkpoint = read_gguf_checkpoint(source_file);
    CHECK_FALSE(checkpoint.config().shared_classifier);
    ConversionOptions options;
    options.initializer = Initializer::greedy;
    const auto converted = convert<1, 128>(checkpoint, options).first;

    const fs::path exported = dir.path() / "q1_0.gguf";
    save_gguf_q1_0_model(converted, source_file, exported);
    const gguf::File exported_file(exported);
    const auto reloaded = read_gguf_q1_0_model(exported_file);
    REQUIRE(reloaded.config() == converted.config());
    for (std::size_t l = 0; l < converted.config().n_layers; ++l) {
        for (Projection p : projections) {
            const auto& a = converted.blocks()[l].projection(p).weights();
            const auto& b = reloaded.blocks()[l].projection(p).weights();
            CHECK(std::ranges::equal(a.words(), b.words()));
            for (std::size_t i = 0; i < a.rows(); ++i) {
                for (std::size_t g = 0; g < a.groups_per_row(); ++g)
                    CHECK(a.scale(0, i, g).bits() == b.scale(0, i, g).bits());
            }
        }
    }
    const std::vector<int> tokens = some_tokens(40, converted.config().vocab_size, 5);
    CHECK(all_logits(reloaded, tokens) == all_logits(converted, tokens));

    // Every tensor but the projections is the source's, byte for byte and in the source's order;
    // the projections are Q1_0 and decode to the converted kernels' dense weights.
    REQUIRE(exported_file.tensors().size() == source_file.tensors().size());
    // The source's keys in its order, then the quantization version llama-quantize adds.
    REQUIRE(exported_file.metadata().size() == source_file.metadata().size() + 1);
    for (std::size_t k = 0; k < source_file.metadata().size(); ++k) {
        CHECK(exported_file.metadata().entries()[k].first == source_file.metadata().entries()[k].first);
    }
    CHECK(exported_file.metadata().unsigned_integer("general.quantization_version") == 2);
    for (std::size_t t = 0; t < source_file.tensors().size(); ++t) {
        const gguf::TensorInfo& in = source_file.tensors()[t];
        const gguf::TensorInfo& out = exported_file.tensors()[t];
        CAPTURE(in.name);
        CHECK(out.name == in.name);
        CHECK(out.dims == in.dims);
        const bool projection = in.name.starts_with("blk.") && !in.name.ends_with("norm.weight");
        if (!projection) {
            CHECK(out.type == in.type);
            CHECK(std::ranges::equal(exported_file.data(out), source_file.data(in)));
        } else {
            CHECK(out.type == gguf::TensorType::Q1_0);
        }
    }
    const auto& wq = converted.blocks()[1].projection(Projection::wq).weights();
    const std::vector<float> decoded = exported_file.to_float(exported_file.tensor("blk.1.attn_q.weight"));
    for (std::size_t i = 0; i < wq.rows(); ++i) {
        for (std::size_t j = 0; j < wq.cols(); ++j) REQUIRE(decoded[i * wq.cols() + j] == wq.weight(i, j));
    }

    // Import -> export again: the same file, byte for byte.
    const fs::path again = dir.path() / "again.gguf";
    save_gguf_q1_0_model(reloaded, exported_file, again);
    CHECK(testing::read_file(again) == testing::read_file(exported));
    // A Q1_0 file is not a float source.
    REQUIRE_THROWS_WITH(read_gguf_checkpoint(exported_file), Contains("Q1_0"));
}

TEST_CASE("GGUF files the example cannot run are refused, naming what is wrong", "[llama][gguf]") {
    const testing::TempDir dir;
    const fs::path good = dir.path() / "good.gguf";
    testing::write_llama_gguf(good, {}, 3);
    const fs::path bad = dir.path() / "bad.gguf";
    const auto f32 = [](std::size_t n, float value) { return testing::f32_bytes(std::vector<float>(n, value)); };

    SECTION("another architecture") {
        rewrite_key(good, bad, "general.architecture", gguf::Value::text("gpt2"));
        REQUIRE_THROWS_WITH(read_gguf_checkpoint(gguf::File(bad)),
                            Contains("general.architecture") && Contains("gpt2"));
    }
    SECTION("partial RoPE") {
        rewrite_key(good, bad, "llama.rope.dimension_count", gguf::Value::uint32(16));
        REQUIRE_THROWS_WITH(read_gguf_config(gguf::File(bad)),
                            Contains("llama.rope.dimension_count") && Contains("16"));
    }
    SECTION("the file's RoPE base and RMSNorm epsilon are the model's") {
        rewrite_key(good, bad, "llama.rope.freq_base", gguf::Value::float32(500000.0f));
        const Config c = read_gguf_config(gguf::File(bad));
        CHECK(c.rope_theta == 500000.0f);
        CHECK(c.norm_epsilon == 1e-5f);
        CHECK(c.dim == 128);
        CHECK(c.hidden_dim == 256);
        CHECK(c.n_layers == 2);
        CHECK(c.n_heads == 4);
        CHECK(c.n_kv_heads == 2);
        CHECK(c.seq_len == 256);
        CHECK(c.vocab_size == 512);
    }
    SECTION("a tensor the example would ignore") {
        const gguf::File source(good);
        gguf::Writer writer(source.metadata());
        for (const gguf::TensorInfo& info : source.tensors()) {
            const auto data = source.data(info);
            writer.add_tensor(info.name, info.dims, info.type, {data.begin(), data.end()});
        }
        writer.add_tensor("rope_freqs.weight", {16}, gguf::TensorType::F32, f32(16, 1.0f));
        writer.write(bad);
        REQUIRE_THROWS_WITH(read_gguf_config(gguf::File(bad)), Contains("rope_freqs.weight") && Contains("ignore"));
    }
    SECTION("a vocabulary-only file") {
        gguf::Writer writer(gguf::File(good).metadata());
        writer.write(bad);
        REQUIRE_THROWS_WITH(read_gguf_checkpoint(gguf::File(bad)), Contains("vocabulary-only"));
    }
    SECTION("a NaN weight") {
        std::vector<float> values(128 * 128, 0.5f);
        values[130] = std::numeric_limits<float>::quiet_NaN();
        rewrite_tensor(good, bad, "blk.0.attn_output.weight", {128, 128}, gguf::TensorType::F32,
                       testing::f32_bytes(values));
        REQUIRE_THROWS_WITH(read_gguf_checkpoint(gguf::File(bad)),
                            Contains("blk.0.attn_output.weight") && Contains("index 130"));
    }
    SECTION("a projection of the wrong shape") {
        rewrite_tensor(good, bad, "blk.1.ffn_down.weight", {128, 256}, gguf::TensorType::F32, f32(128 * 256, 0.1f));
        REQUIRE_THROWS_WITH(read_gguf_checkpoint(gguf::File(bad)),
                            Contains("blk.1.ffn_down.weight") && Contains("[256, 128]") && Contains("[128, 256]"));
    }
    SECTION("Q1_0 and float projections mixed") {
        std::vector<std::byte> q1_0(128 * 128 / 128 * q1_0_block_bytes, std::byte{0});
        rewrite_tensor(good, bad, "blk.1.attn_q.weight", {128, 128}, gguf::TensorType::Q1_0, q1_0);
        REQUIRE_THROWS_WITH(read_gguf_checkpoint(gguf::File(bad)),
                            Contains("blk.1.attn_q.weight") && Contains("all Q1_0 or none"));
    }
    SECTION("RoPE scaling") {
        rewrite_key(good, bad, "llama.rope.scaling.type", gguf::Value::text("yarn"));
        REQUIRE_THROWS_WITH(read_gguf_config(gguf::File(bad)), Contains("llama.rope.scaling.type") && Contains("yarn"));
    }
}

TEST_CASE("a Q1_0 export refuses inputs that are not whole Q1_0 blocks", "[llama][gguf]") {
    const testing::TempDir dir;
    const fs::path source = dir.path() / "float.gguf";
    testing::LlamaGgufShape shape;
    shape.hidden = 192;  // ffn_down's 192 inputs are 1.5 blocks
    testing::write_llama_gguf(source, {}, 9, shape);
    const gguf::File file(source);
    ConversionOptions options;
    options.initializer = Initializer::greedy;
    const auto model = convert<1, 128>(read_gguf_checkpoint(file), options).first;
    REQUIRE_THROWS_WITH(save_gguf_q1_0_model(model, file, dir.path() / "out.gguf"),
                        Contains("w2") && Contains("192") && Contains("GGUF cannot carry"));
    CHECK_FALSE(fs::exists(dir.path() / "out.gguf"));
}
