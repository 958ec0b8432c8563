#include <catch2/catch.hpp>

#include <dlfcn.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <multibool/core/serialization.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

// Every fsync of this program is recorded with the path of what it synced, so that a test can
// see what an atomic save makes durable, and in which order.
std::vector<std::string>& synced_paths() {
    static std::vector<std::string> paths;
    return paths;
}

extern "C" int fsync(int fd) {
    std::error_code ignored;
    synced_paths().push_back(std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ignored).string());
    static const auto real_fsync = reinterpret_cast<int (*)(int)>(dlsym(RTLD_NEXT, "fsync"));
    return real_fsync(fd);
}

namespace {

std::filesystem::path scratch_path(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("multibool-test-" + std::to_string(fresh_seed()) + "-" + name);
}

}  // namespace

TEST_CASE("save/load round-trips every parameter combination", "[core][serialization]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto round_trip = [&]<class Matrix>() {
        for (std::size_t cols : {1u, 100u, 172u}) {
            const auto m = testing::random_matrix<Matrix>(3, cols, rng);
            const auto bytes = testing::to_bytes(m);
            // Header (8 + 5*4 + 3*8), payload, checksum.
            REQUIRE(bytes.size() == 52 + m.storage_bytes() + 8);
            REQUIRE(testing::from_bytes<Matrix>(bytes) == m);
        }
    };
    testing::for_each_k_and_group<std::uint8_t>(round_trip);
    testing::for_each_k_and_group<std::uint64_t>(round_trip);
    round_trip.operator()<BitPlaneMatrix<3, 128, double, std::uint32_t>>();
    round_trip.operator()<BitPlaneMatrix<8, 16, float, std::uint16_t>>();
}

TEST_CASE("records follow one another in a stream", "[core][serialization]") {
    std::mt19937_64 rng(fresh_seed());
    const auto a = testing::random_matrix<BitPlaneMatrix<2, 64>>(4, 100, rng);
    const auto b = testing::random_matrix<BitPlaneMatrix<2, 64>>(2, 7, rng);
    std::stringstream stream(std::ios::in | std::ios::out | std::ios::binary);
    save(a, stream);
    save(b, stream);
    REQUIRE(load<BitPlaneMatrix<2, 64>>(stream, "stream") == a);
    REQUIRE(load<BitPlaneMatrix<2, 64>>(stream, "stream") == b);
}

TEST_CASE("files are written atomically and read back whole", "[core][serialization]") {
    std::mt19937_64 rng(fresh_seed());
    const auto path = scratch_path("matrix.mbool");
    const auto first = testing::random_matrix<BitPlaneMatrix<3, 128>>(5, 300, rng);
    const auto second = testing::random_matrix<BitPlaneMatrix<3, 128>>(2, 20, rng);
    save(first, path);
    save(second, path);
    REQUIRE_FALSE(std::filesystem::exists(path.string() + ".tmp"));
    REQUIRE(load<BitPlaneMatrix<3, 128>>(path) == second);

    {
        std::ofstream append(path, std::ios::binary | std::ios::app);
        append << "x";
    }
    REQUIRE_THROWS_WITH((load<BitPlaneMatrix<3, 128>>(path)), Catch::Contains("end of file"));
    std::filesystem::remove(path);
    REQUIRE_THROWS_WITH((load<BitPlaneMatrix<3, 128>>(path)),
                        Catch::Contains(path.string()) && Catch::Contains("cannot open"));
}

TEST_CASE("an atomic save syncs the new file before the rename and its folder after", "[core][serialization]") {
    testing::TempDir dir;
    const auto folder = std::filesystem::canonical(dir.path());
    const auto path = folder / "matrix.mbool";
    std::mt19937_64 rng(fresh_seed());
    const auto m = testing::random_matrix<BitPlaneMatrix<2, 64>>(3, 100, rng);
    synced_paths().clear();
    save(m, path);
    const std::vector<std::string> synced = synced_paths();
    REQUIRE(synced.size() == 2);
    CHECK(synced[0].starts_with(path.string() + ".tmp."));  // the new bytes, under the temporary name
    CHECK(synced[1] == folder.string());                    // then the folder that now names them
    REQUIRE(load<BitPlaneMatrix<2, 64>>(path) == m);
}

TEST_CASE("a file written for other parameters names the field that differs", "[core][serialization]") {
    std::mt19937_64 rng(fresh_seed());
    const auto bytes =
        testing::to_bytes(testing::random_matrix<BitPlaneMatrix<2, 64, float, std::uint32_t>>(3, 70, rng));
    REQUIRE_NOTHROW(testing::from_bytes<BitPlaneMatrix<2, 64, float, std::uint32_t>>(bytes));
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<3, 64, float, std::uint32_t>>(bytes)),
                        "memory: field 'kernels': expected 3, found 2");
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, 128, float, std::uint32_t>>(bytes)),
                        "memory: field 'group_size': expected 128, found 64");
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, per_row, float, std::uint32_t>>(bytes)),
                        "memory: field 'group_size': expected 0, found 64");
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, 64, float, std::uint64_t>>(bytes)),
                        "memory: field 'word_bits': expected 64, found 32");
    REQUIRE_THROWS_WITH(((testing::from_bytes<BitPlaneMatrix<2, 64, double, std::uint32_t>>(bytes))),
                        "memory: field 'scale_type': expected 2, found 1");

    auto bad_magic = bytes;
    bad_magic[0] = 'X';
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, 64, float, std::uint32_t>>(bad_magic)),
                        Catch::Contains("field 'magic'"));
    auto bad_version = bytes;
    bad_version[8] = 9;
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<2, 64, float, std::uint32_t>>(bad_version)),
                        "memory: field 'version': expected 1, found 9");
}

TEST_CASE("every truncation and every corrupted byte is detected", "[core][serialization]") {
    using Matrix = BitPlaneMatrix<2, 16, float, std::uint16_t>;
    std::mt19937_64 rng(fresh_seed());
    const auto bytes = testing::to_bytes(testing::random_matrix<Matrix>(3, 21, rng));
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        CAPTURE(length);
        REQUIRE_THROWS_AS((testing::from_bytes<Matrix>(bytes.substr(0, length))), FormatError);
    }
    REQUIRE_THROWS_WITH((testing::from_bytes<Matrix>(bytes.substr(0, 60))),
                        Catch::Contains("field 'payload (plane words)'") && Catch::Contains("truncated"));
    for (std::size_t position = 0; position < bytes.size(); ++position) {
        for (int bit : {0, 7}) {
            CAPTURE(position, bit);
            auto corrupt = bytes;
            corrupt[position] = static_cast<char>(corrupt[position] ^ (1 << bit));
            REQUIRE_THROWS_AS((testing::from_bytes<Matrix>(corrupt)), FormatError);
        }
    }
    auto payload_flip = bytes;
    payload_flip[60] ^= 1;
    REQUIRE_THROWS_WITH((testing::from_bytes<Matrix>(payload_flip)), Catch::Contains("field 'checksum'"));
}

TEST_CASE("absurd dimensions are refused before any allocation", "[core][serialization]") {
    std::mt19937_64 rng(fresh_seed());
    auto bytes = testing::to_bytes(testing::random_matrix<BitPlaneMatrix<1, 32>>(2, 40, rng));
    // rows is the u64 at offset 28.
    for (int b = 0; b < 8; ++b) bytes[28 + b] = static_cast<char>(0x7f);
    REQUIRE_THROWS_WITH((testing::from_bytes<BitPlaneMatrix<1, 32>>(bytes)),
                        Catch::Contains("field 'rows': expected at most"));
}

TEST_CASE("FNV-1a matches its published test vectors", "[core][serialization]") {
    auto hash = [](std::string_view text) {
        Fnv1a h;
        h.update(std::as_bytes(std::span<const char>(text.data(), text.size())));
        return h.value();
    };
    REQUIRE(hash("") == 0xcbf29ce484222325ULL);
    REQUIRE(hash("a") == 0xaf63dc4c8601ec8cULL);
    REQUIRE(hash("foobar") == 0x85944171f73967e8ULL);
}

namespace {

// The record of a 1x3 matrix, K = 1, G = 8, 8-bit words, signs [+, -, +], scale 0.5, written
// out by hand from the format description, without its trailing checksum.
std::string golden_record_body() {
    const unsigned char bytes[] = {
        'M',  'B',  'O',  'O',  'L', 'B', 'P', 'M',  // magic
        1,    0,    0,    0,                         // version
        1,    0,    0,    0,                         // kernels
        8,    0,    0,    0,                         // group_size
        8,    0,    0,    0,                         // word_bits
        1,    0,    0,    0,                         // scale_type: float32
        1,    0,    0,    0,    0,   0,   0,   0,    // rows
        3,    0,    0,    0,    0,   0,   0,   0,    // cols
        5,    0,    0,    0,    0,   0,   0,   0,    // payload_bytes
        0x05,                                        // plane word: bits 0 and 2 set
        0x00, 0x00, 0x00, 0x3f,                      // 0.5f
    };
    return std::string(reinterpret_cast<const char*>(bytes), sizeof bytes);
}

std::string with_checksum(const std::string& body) {
    Fnv1a h;
    h.update(std::as_bytes(std::span<const char>(body.data(), body.size())));
    const std::uint64_t checksum = h.value();
    return body + std::string(reinterpret_cast<const char*>(&checksum), sizeof checksum);
}

}  // namespace

TEST_CASE("the file format is pinned byte for byte", "[core][serialization]") {
    using Matrix = BitPlaneMatrix<1, 8, float, std::uint8_t>;
    const std::vector<std::int8_t> signs{1, -1, 1};
    const std::vector<float> scales{0.5f};
    const auto m = Matrix::from_planes(1, 3, signs, scales);
    REQUIRE(testing::to_bytes(m) == with_checksum(golden_record_body()));
    REQUIRE(testing::from_bytes<Matrix>(with_checksum(golden_record_body())) == m);
}

TEST_CASE("a well-formed record with an invalid payload is refused", "[core][serialization]") {
    using Matrix = BitPlaneMatrix<1, 8, float, std::uint8_t>;
    auto padding_set = golden_record_body();
    padding_set[52] = static_cast<char>(0x85);  // bit 7 lies beyond the 3 columns
    REQUIRE_THROWS_WITH(testing::from_bytes<Matrix>(with_checksum(padding_set)),
                        Catch::Contains("field 'payload'") && Catch::Contains("padding bits set"));
    auto nan_scale = golden_record_body();
    nan_scale[55] = static_cast<char>(0xc0);
    nan_scale[56] = static_cast<char>(0x7f);  // 0x7fc00000: a quiet NaN
    REQUIRE_THROWS_WITH(testing::from_bytes<Matrix>(with_checksum(nan_scale)),
                        Catch::Contains("field 'payload'") && Catch::Contains("not a finite number"));
    // 2^31 rows of no columns: no payload at all, yet a consumer sizing its outputs by rows would
    // allocate GiBs.
    auto rows_without_columns = golden_record_body().substr(0, 52);
    rows_without_columns[28] = 0;
    rows_without_columns[31] = static_cast<char>(0x80);  // rows = 2^31
    rows_without_columns[36] = 0;                        // cols = 0
    rows_without_columns[44] = 0;                        // payload_bytes = 0
    REQUIRE_THROWS_WITH(testing::from_bytes<Matrix>(with_checksum(rows_without_columns)),
                        Catch::Contains("field 'cols': expected at least 1 for a matrix with rows"));
    auto huge_cols = golden_record_body();
    huge_cols[40] = 1;  // cols = 2^32 + 3, beyond the 2^31 limit
    REQUIRE_THROWS_WITH(testing::from_bytes<Matrix>(with_checksum(huge_cols)),
                        Catch::Contains("field 'cols': expected at most"));
}
