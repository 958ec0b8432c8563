#pragma once
// The bit half of alternating refinement (docs/METHOD.md §3): with the scales fixed, each element's K
// bits become the sign combination whose level sum_k alpha_k b_k is nearest to its target.
// Per element this is the exact minimiser of (w - level)^2 and of h_jj (w - level)^2 for any
// h_jj >= 0, so it is exact for the weight-space and diagonal-H objectives alike; H's diagonal
// is therefore not a parameter.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/packed_bits.hpp"
#include "multibool/solvers/alpha_solver.hpp"

namespace multibool {

// Ties, so that the result is deterministic and changes as few bits as possible: an element
// keeps its bits when they already give a nearest level; otherwise it takes the larger of two
// equally near levels (as sign(0) = +1), and among sign combinations giving the same level the
// smallest code (code bit k set = plane k is +1).
template <BitPlaneStorage M>
void assign_nearest_levels(M& m, MatrixView<const float> target) {
    constexpr std::size_t K = M::kernels;
    constexpr std::size_t codes = std::size_t{1} << K;
    check_target("assign_nearest_levels", m, target);
    std::array<double, K> alphas{};
    std::array<double, codes> level_of_code{};
    std::array<std::pair<double, std::size_t>, codes> sorted{};
    // The distinct levels ascending, each with its smallest code, padded with +inf to 2^K
    // entries for the search below.
    std::array<double, codes> levels{};
    std::array<std::size_t, codes> code_of_level{};
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
            for (std::size_t k = 0; k < K; ++k) alphas[k] = static_cast<double>(m.scales(k, i)[g]);
            for (std::size_t code = 0; code < codes; ++code) {
                // Summed in kernel order from 0, as the solvers reconstruct w_hat.
                double level = 0.0;
                for (std::size_t k = 0; k < K; ++k) level += (code >> k) & 1 ? alphas[k] : -alphas[k];
                level_of_code[code] = level;
                sorted[code] = {level, code};
            }
            std::sort(sorted.begin(), sorted.end());
            std::size_t distinct = 0;
            for (std::size_t s = 0; s < codes; ++s) {
                if (distinct == 0 || sorted[s].first != levels[distinct - 1]) {
                    levels[distinct] = sorted[s].first;
                    code_of_level[distinct++] = sorted[s].second;
                }
            }
            std::fill(levels.begin() + distinct, levels.end(), std::numeric_limits<double>::infinity());
            for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) {
                const double w = target(i, j);
                // How many levels lie below w, halving a power-of-two window without branches:
                // targets fall between levels at random, which a branching search mispredicts.
                std::size_t below = 0;
                for (std::size_t step = codes / 2; step > 0; step /= 2)
                    below += levels[below + step - 1] < w ? step : 0;
                below += levels[below] < w ? 1 : 0;
                // The first level >= w and the one before it are the only candidates.
                std::size_t nearest = below;
                if (below == distinct || (below > 0 && w - levels[below - 1] < levels[below] - w)) nearest = below - 1;
                std::size_t current = 0;
                for (std::size_t k = 0; k < K; ++k) current |= std::size_t{column_is_set(m.plane_row(k, i), j)} << k;
                if (std::fabs(w - level_of_code[current]) <= std::fabs(w - levels[nearest])) continue;
                for (std::size_t k = 0; k < K; ++k) m.set_sign(k, i, j, (code_of_level[nearest] >> k) & 1 ? 1 : -1);
            }
        }
    }
}

}  // namespace multibool
