// Fuzz targets for the matrix records: MBOOLBPM (BitPlaneMatrix) and MBOOLRCM (RowColumnMatrix).
// Oracles: a record that loads has finite dequantized weights, saves back to the bytes it was read
// from (the checksum aside: fuzzing builds do not verify it), and reloads equal.
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <multibool/core/bit_plane_matrix.hpp>
#include <multibool/core/group_size.hpp>
#include <multibool/core/half.hpp>
#include <multibool/core/row_column_matrix.hpp>
#include <multibool/core/row_column_serialization.hpp>
#include <multibool/core/serialization.hpp>

#include "fuzz/fuzz_target.hpp"

namespace multibool::fuzz {
namespace {

constexpr std::size_t checksum_bytes = 8;

template <class Matrix>
bool load_save_reload(Bytes input) {
    std::istringstream in(text_of(input));
    Matrix m;
    try {
        m = load<Matrix>(in, "input");
    } catch (const FormatError&) {
        return false;
    }
    const auto consumed = static_cast<std::size_t>(in.tellg());
    for (const float w : m.dequantize())
        require(std::isfinite(w), "a loaded matrix dequantizes to a non-finite weight");
    std::ostringstream out;
    save(m, out);
    const std::string saved = out.str();
    require(saved.size() == consumed, "the saved record's length differs from the bytes read");
    require(saved.compare(0, saved.size() - checksum_bytes, text_of(input), 0, saved.size() - checksum_bytes) == 0,
            "the saved record differs from the bytes read");
    std::istringstream again(saved);
    require(load<Matrix>(again, "saved") == m, "the saved record reloads to another matrix");
    return true;
}

std::vector<std::int8_t> fixed_signs(std::size_t n, std::uint64_t seed) {
    std::vector<std::int8_t> signs(n);
    std::mt19937_64 rng(seed);
    for (auto& s : signs) s = (rng() & 1) != 0 ? 1 : -1;
    return signs;
}

template <class Matrix>
std::string record_bytes(const Matrix& m) {
    std::ostringstream out;
    save(m, out);
    return out.str();
}

using GroupMatrix = BitPlaneMatrix<2, 8, half>;
using RowMatrix = BitPlaneMatrix<3, per_row, float, std::uint8_t>;
using RowColumn = RowColumnMatrix<2, half>;

std::vector<Seed> bit_plane_seeds() {
    const auto group = [](std::size_t rows, std::size_t cols, std::uint64_t seed) {
        const auto scales = fixed_floats(2 * rows * group_count(cols, 8), seed, 1.0f);
        return GroupMatrix::from_planes(rows, cols, fixed_signs(2 * rows * cols, seed),
                                        std::vector<half>(scales.begin(), scales.end()));
    };
    const auto scales = fixed_floats(3 * 5, 7, 1.0f);
    return {{"group-3x20", record_bytes(group(3, 20, 1))},
            {"group-1x8", record_bytes(group(1, 8, 2))},
            {"group-empty", record_bytes(GroupMatrix())},
            {"row-5x13", record_bytes(RowMatrix::from_planes(5, 13, fixed_signs(3 * 5 * 13, 3), scales))}};
}

std::vector<Seed> row_column_seeds() {
    const auto make = [](std::size_t rows, std::size_t cols, std::uint64_t seed) {
        const auto r = fixed_floats(2 * rows, seed, 1.0f), c = fixed_floats(2 * cols, seed + 1, 1.0f);
        return RowColumn::from_planes(rows, cols, fixed_signs(2 * rows * cols, seed),
                                      std::vector<half>(r.begin(), r.end()), std::vector<half>(c.begin(), c.end()));
    };
    return {{"4x70", record_bytes(make(4, 70, 5))}, {"1x1", record_bytes(make(1, 1, 6))}};
}

// One target for both MBOOLBPM instantiations: the type fields choose which one reads the input.
const Registration bit_plane{"bit_plane_matrix",
                             [](Bytes input) {
                                 const bool group = load_save_reload<GroupMatrix>(input);
                                 return load_save_reload<RowMatrix>(input) || group;
                             },
                             bit_plane_seeds};
const Registration row_column{"row_column_matrix", [](Bytes input) { return load_save_reload<RowColumn>(input); },
                              row_column_seeds};

}  // namespace
}  // namespace multibool::fuzz
