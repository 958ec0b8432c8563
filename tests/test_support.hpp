#pragma once
// Shared by the tests: seeded random data (the seed is printed on failure), visible skips,
// the parameter grid, random matrices and float64 references.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <multibool/core/binary_io.hpp>
#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/matrix_view.hpp>
#include <multibool/core/row_column_serialization.hpp>
#include <multibool/core/serialization.hpp>

#include "common/assets_path.hpp"

namespace multibool::testing {

// A fresh seed per run unless MULTIBOOL_TEST_SEED fixes it; CAPTURE it so a failure names it.
inline std::uint64_t fresh_seed() {
    if (const char* env = std::getenv("MULTIBOOL_TEST_SEED"); env != nullptr && *env != '\0') {
        return std::stoull(env);
    }
    return std::random_device{}() ^ (std::uint64_t(std::random_device{}()) << 32);
}

// A rows x cols view of a whole vector (throws if the sizes disagree).
inline MatrixView<const float> view(const std::vector<float>& v, std::size_t rows, std::size_t cols) {
    return {std::span<const float>(v), rows, cols};
}
inline MatrixView<float> view(std::vector<float>& v, std::size_t rows, std::size_t cols) {
    return {std::span<float>(v), rows, cols};
}

inline std::vector<float> random_floats(std::size_t n, std::mt19937_64& rng, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// CTest marks a test skipped when its output has "SKIPPED:" (Catch2 v2 has no SKIP macro).
inline bool assets_present(const std::filesystem::path& file) {
    const auto path = multibool::examples::assets_dir() / file;
    if (std::filesystem::exists(path)) return true;
    std::cout << "SKIPPED: " << path.string() << " not found; set MULTIBOOL_ASSETS to the folder holding it\n";
    return false;
}

template <class Word, std::size_t K, class F>
void for_each_group(F& f) {
    f.template operator()<BitPlaneMatrix<K, 32, float, Word>>();
    f.template operator()<BitPlaneMatrix<K, 64, float, Word>>();
    f.template operator()<BitPlaneMatrix<K, 128, float, Word>>();
    f.template operator()<BitPlaneMatrix<K, per_row, float, Word>>();
}

template <class Word, class F, std::size_t... Ks>
void for_each_k_and_group(F& f, std::index_sequence<Ks...>) {
    (for_each_group<Word, Ks + 1>(f), ...);
}

// Calls f.template operator()<BitPlaneMatrix<K, G, float, Word>>() for K in 1..4 and
// G in {32, 64, 128, per row}: the parameter grid every product is tested on.
template <class Word, class F>
void for_each_k_and_group(F&& f) {
    for_each_k_and_group<Word>(f, std::make_index_sequence<4>{});
}

// Random signs and scales through the explicit-planes constructor (not the initializer). Scales
// are signed powers of two from 1/8 to 2, so products with small-integer activations are exact
// in float and can be compared with a float64 reference for equality.
template <class Matrix>
Matrix random_matrix(std::size_t rows, std::size_t cols, std::mt19937_64& rng) {
    const Matrix shape(rows, cols);
    std::vector<std::int8_t> signs(Matrix::kernels * rows * cols);
    std::vector<typename Matrix::scale_type> scales(Matrix::kernels * rows * shape.groups_per_row());
    std::bernoulli_distribution coin(0.5);
    std::uniform_int_distribution<int> exponent(-3, 1);
    for (auto& s : signs) s = coin(rng) ? 1 : -1;
    for (auto& a : scales)
        a = static_cast<typename Matrix::scale_type>((coin(rng) ? 1 : -1) * std::ldexp(1.0, exponent(rng)));
    return Matrix::from_planes(rows, cols, signs, scales);
}

// Integers in [-8, 8] as floats: every sum the tests form with them stays exact.
inline std::vector<float> small_integers(std::size_t n, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> dist(-8, 8);
    std::vector<float> v(n);
    for (auto& x : v) x = float(dist(rng));
    return v;
}

// y = W x in double for a dense row-major rows x cols W.
inline std::vector<double> dense_gemv(std::span<const float> w, std::size_t rows, std::size_t cols,
                                      std::span<const float> x) {
    std::vector<double> y(rows, 0.0);
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) y[i] += double(w[i * cols + j]) * double(x[j]);
    }
    return y;
}

inline double relative_frobenius_error(std::span<const float> reference, std::span<const float> approx) {
    double diff = 0.0;
    double norm = 0.0;
    for (std::size_t e = 0; e < reference.size(); ++e) {
        diff += std::pow(double(reference[e]) - double(approx[e]), 2);
        norm += std::pow(double(reference[e]), 2);
    }
    return std::sqrt(diff / norm);
}

// A folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
public:
    TempDir() : path_(std::filesystem::temp_directory_path() / ("multibool-test-" + std::to_string(fresh_seed()))) {
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

inline std::filesystem::path write_file(const std::filesystem::path& path, std::string_view bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return path;
}
inline std::filesystem::path write_file(const std::filesystem::path& path, const std::vector<char>& bytes) {
    return write_file(path, std::string_view(bytes.data(), bytes.size()));
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A matrix's record as bytes, and back: serialization round trips without files.
template <class Matrix>
std::string to_bytes(const Matrix& m) {
    std::ostringstream out(std::ios::binary);
    save(m, out);
    return out.str();
}
template <class Matrix>
Matrix from_bytes(const std::string& bytes) {
    std::istringstream in(bytes, std::ios::binary);
    return load<Matrix>(in, "memory");
}

// An optimizer's or policy's write_state as bytes, and read_state from (a prefix of) them.
template <class Optimizer>
std::string state_of(const Optimizer& optimizer) {
    std::ostringstream out(std::ios::binary);
    BinaryWriter writer(out);
    optimizer.write_state(writer);
    return out.str();
}
template <class Optimizer>
void read_state_from(Optimizer& optimizer, const std::string& bytes) {
    std::istringstream in(bytes, std::ios::binary);
    BinaryReader reader(in, "state");
    optimizer.read_state(reader);
}

}  // namespace multibool::testing
