// The llama2.c checkpoint reader: the shipped model against an independent read of its bytes,
// and synthetic checkpoints (valid and corrupted) written here, independently of the reader.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "llama/checkpoint.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using multibool::FormatError;
using multibool::llama::load_checkpoint;

constexpr float infinity = std::numeric_limits<float>::infinity();
constexpr float not_a_number = std::numeric_limits<float>::quiet_NaN();

// The float at float_index after the 7-int32 header, read straight from the file.
float raw_float_at(const fs::path& path, std::uint64_t float_index) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(28 + 4 * float_index));
    char bytes[4];
    in.read(bytes, 4);
    REQUIRE(in.gcount() == 4);
    float value;
    std::memcpy(&value, bytes, 4);
    return value;
}

// A tiny model: dim 8, hidden 12, 2 layers, 2 heads, 1 KV head (head_size 4, kv_dim 4),
// vocab 10, seq_len 4. The float arrays follow the README's layout, in file order.
struct SyntheticModel {
    std::array<std::int32_t, 7> header{8, 12, 2, 2, 1, 10, 4};
    std::vector<std::pair<std::string, std::vector<float>>> arrays;

    SyntheticModel(bool tied, std::mt19937_64& rng) {
        if (!tied) header[5] = -header[5];
        const std::pair<const char*, std::size_t> layout[] = {
            {"token_embedding", 10 * 8},
            {"rms_att", 2 * 8},
            {"wq", 2 * 8 * 8},
            {"wk", 2 * 4 * 8},
            {"wv", 2 * 4 * 8},
            {"wo", 2 * 8 * 8},
            {"rms_ffn", 2 * 8},
            {"w1", 2 * 12 * 8},
            {"w2", 2 * 8 * 12},
            {"w3", 2 * 12 * 8},
            {"rms_final", 8},
            {"freq_cis_real", 4 * 4 / 2},
            {"freq_cis_imag", 4 * 4 / 2},
        };
        for (const auto& [name, count] : layout) {
            arrays.emplace_back(name, multibool::testing::random_floats(count, rng));
        }
        if (!tied) arrays.emplace_back("wcls", multibool::testing::random_floats(10 * 8, rng));
    }

    [[nodiscard]] std::vector<float>& array(const std::string& name) {
        for (auto& [array_name, values] : arrays) {
            if (array_name == name) return values;
        }
        throw std::logic_error("no array " + name);
    }

    [[nodiscard]] std::vector<char> bytes() const {
        std::vector<char> out(sizeof header);
        std::memcpy(out.data(), header.data(), sizeof header);
        for (const auto& [name, values] : arrays) {
            const auto* begin = reinterpret_cast<const char*>(values.data());
            out.insert(out.end(), begin, begin + values.size() * sizeof(float));
        }
        return out;
    }
};

// The FormatError load_checkpoint throws for path, or nothing if it accepts the file.
std::optional<FormatError> load_error(const fs::path& path) {
    try {
        load_checkpoint(path);
    } catch (const FormatError& e) {
        return e;
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("stories260K.bin loads with the README's config and the file's own bytes", "[llama]") {
    if (!multibool::testing::assets_present("stories260K.bin")) return;
    const fs::path path = multibool::examples::assets_dir() / "stories260K.bin";
    const auto checkpoint = load_checkpoint(path);
    const auto& c = checkpoint.config();
    CHECK(c.dim == 64);
    CHECK(c.hidden_dim == 172);
    CHECK(c.n_layers == 5);
    CHECK(c.n_heads == 8);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.vocab_size == 512);
    CHECK(c.seq_len == 512);
    CHECK(c.shared_classifier);
    CHECK(c.head_size() == 8);
    CHECK(c.kv_dim() == 32);
    CHECK(checkpoint.tensors().wcls.empty());

    // Offsets in floats after the header, from the README's layout.
    constexpr std::uint64_t V = 512, D = 64, H = 172, L = 5, KV = 32;
    const std::uint64_t wq_start = V * D + L * D;
    const std::uint64_t w2_start = wq_start + L * D * D + 2 * L * KV * D + L * D * D + L * D + L * H * D;
    const std::uint64_t rms_final_start = w2_start + 2 * L * D * H;
    CHECK(checkpoint.token_embedding()(511, 63) == raw_float_at(path, V * D - 1));
    CHECK(checkpoint.wq(2)(5, 7) == raw_float_at(path, wq_start + 2 * D * D + 5 * D + 7));
    CHECK(checkpoint.w2(4)(63, 171) == raw_float_at(path, w2_start + 4 * D * H + 63 * H + 171));
    CHECK(checkpoint.rms_final()[63] == raw_float_at(path, rms_final_start + 63));
    CHECK(checkpoint.classifier().data().data() == checkpoint.token_embedding().data().data());
}

TEST_CASE("synthetic checkpoints round-trip exactly, tied and untied", "[llama]") {
    const bool tied = GENERATE(true, false);
    const auto seed = multibool::testing::fresh_seed();
    CAPTURE(tied, seed);
    std::mt19937_64 rng(seed);
    SyntheticModel model(tied, rng);
    multibool::testing::TempDir dir;
    const auto checkpoint = load_checkpoint(multibool::testing::write_file(dir.path() / "tiny.bin", model.bytes()));

    const auto& c = checkpoint.config();
    CHECK(c == multibool::llama::Config{8, 12, 2, 2, 1, 10, 4, tied});
    const auto& t = checkpoint.tensors();
    CHECK(t.token_embedding == model.array("token_embedding"));
    CHECK(t.rms_att == model.array("rms_att"));
    CHECK(t.wq == model.array("wq"));
    CHECK(t.wk == model.array("wk"));
    CHECK(t.wv == model.array("wv"));
    CHECK(t.wo == model.array("wo"));
    CHECK(t.rms_ffn == model.array("rms_ffn"));
    CHECK(t.w1 == model.array("w1"));
    CHECK(t.w2 == model.array("w2"));
    CHECK(t.w3 == model.array("w3"));
    CHECK(t.rms_final == model.array("rms_final"));
    CHECK(t.wcls == (tied ? std::vector<float>{} : model.array("wcls")));

    // Views pick layer blocks with the README's shapes.
    CHECK(checkpoint.wk(1).rows() == 4);
    CHECK(checkpoint.wk(1)(2, 3) == model.array("wk")[1 * 4 * 8 + 2 * 8 + 3]);
    CHECK(checkpoint.w2(1).cols() == 12);
    CHECK(checkpoint.w2(1)(7, 11) == model.array("w2")[1 * 8 * 12 + 7 * 12 + 11]);
    CHECK(checkpoint.rms_ffn(1)[0] == model.array("rms_ffn")[8]);
    CHECK(checkpoint.classifier()(9, 7) == model.array(tied ? "token_embedding" : "wcls")[79]);
    CHECK_THROWS_AS(checkpoint.wq(2), std::out_of_range);
}

TEST_CASE("bad header values are FormatErrors naming the field", "[llama]") {
    struct Corruption {
        std::size_t index;
        std::int32_t value;
        const char* field;
    };
    const auto corruption = GENERATE(values<Corruption>({
        {0, 0, "dim"},
        {0, -8, "dim"},
        {1, 0, "hidden_dim"},
        {2, -1, "n_layers"},
        {2, (1 << 20) + 1, "n_layers"},
        {3, 0, "n_heads"},
        {3, 3, "n_heads"},  // 8 is not divisible by 3
        {4, 0, "n_kv_heads"},
        {4, 3, "n_kv_heads"},  // 2 heads are not divisible by 3
        {5, 0, "vocab_size"},
        {5, std::numeric_limits<std::int32_t>::min(), "vocab_size"},
        {6, 0, "seq_len"},
        {3, 8, "head_size"},  // 8 / 8 = 1: RoPE needs pairs
    }));
    CAPTURE(corruption.index, corruption.value, corruption.field);
    std::mt19937_64 rng(1);
    SyntheticModel model(true, rng);
    model.header[corruption.index] = corruption.value;
    multibool::testing::TempDir dir;
    const auto path = multibool::testing::write_file(dir.path() / "bad-header.bin", model.bytes());
    const auto error = load_error(path);
    REQUIRE(error);
    CHECK(error->field() == corruption.field);
    CHECK_THAT(error->what(), Contains(path.string()) && Contains(std::to_string(corruption.value)));
}

TEST_CASE("a file shorter than the header is a FormatError on 'header'", "[llama]") {
    const std::size_t length = GENERATE(0, 1, 27);
    CAPTURE(length);
    std::mt19937_64 rng(1);
    auto bytes = SyntheticModel(true, rng).bytes();
    bytes.resize(length);
    multibool::testing::TempDir dir;
    const auto error = load_error(multibool::testing::write_file(dir.path() / "short.bin", bytes));
    REQUIRE(error);
    CHECK(error->field() == "header");
}

TEST_CASE("a file length other than the header implies names both lengths", "[llama]") {
    std::mt19937_64 rng(1);
    const auto good = SyntheticModel(true, rng).bytes();
    const std::string implied = std::to_string(good.size());
    multibool::testing::TempDir dir;

    SECTION("one float too many") {
        auto bytes = good;
        bytes.resize(good.size() + 4);
        REQUIRE_THROWS_WITH(
            load_checkpoint(multibool::testing::write_file(dir.path() / "long.bin", bytes)),
            Contains("field 'file length'") && Contains(implied) && Contains(std::to_string(bytes.size())));
    }
    SECTION("truncated in the middle of a tensor") {
        auto bytes = good;
        bytes.resize(good.size() - 10);
        REQUIRE_THROWS_WITH(
            load_checkpoint(multibool::testing::write_file(dir.path() / "cut.bin", bytes)),
            Contains("field 'file length'") && Contains(implied) && Contains(std::to_string(bytes.size())));
    }
    SECTION("an untied header over a tied body lacks wcls") {
        auto bytes = good;
        const std::int32_t untied_vocab = -10;
        std::memcpy(bytes.data() + 5 * 4, &untied_vocab, 4);
        REQUIRE_THROWS_WITH(load_checkpoint(multibool::testing::write_file(dir.path() / "no-wcls.bin", bytes)),
                            Contains("field 'file length'") && Contains(std::to_string(good.size() + 10 * 8 * 4)));
    }
    SECTION("dimensions whose byte count overflows 64 bits") {
        const std::array<std::int32_t, 7> header{1 << 20, 1 << 20, 1 << 20, 1 << 10, 1 << 10, 1 << 20, 1 << 20};
        std::vector<char> bytes(sizeof header);
        std::memcpy(bytes.data(), header.data(), sizeof header);
        REQUIRE_THROWS_WITH(load_checkpoint(multibool::testing::write_file(dir.path() / "huge.bin", bytes)),
                            Contains("field 'file length'") && Contains("28 bytes"));
    }
}

TEST_CASE("non-finite weights are FormatErrors naming the tensor and the index", "[llama]") {
    struct Corruption {
        const char* tensor;
        std::size_t index;
        float value;
    };
    const auto corruption = GENERATE(values<Corruption>({
        {"token_embedding", 0, not_a_number},
        {"wk", 37, not_a_number},
        {"w2", 191, -infinity},
        {"rms_final", 3, infinity},
        {"wcls", 79, infinity},
    }));
    CAPTURE(corruption.tensor, corruption.index);
    std::mt19937_64 rng(1);
    SyntheticModel model(false, rng);
    model.array(corruption.tensor)[corruption.index] = corruption.value;
    multibool::testing::TempDir dir;
    const auto error = load_error(multibool::testing::write_file(dir.path() / "non-finite.bin", model.bytes()));
    REQUIRE(error);
    CHECK(error->field() == corruption.tensor);
    CHECK_THAT(error->what(), Contains("index " + std::to_string(corruption.index)));
}

TEST_CASE("a missing checkpoint is an error naming the path", "[llama]") {
    multibool::testing::TempDir dir;
    const auto path = dir.path() / "absent.bin";
    REQUIRE_THROWS_WITH(load_checkpoint(path), Contains(path.string()));
}
