#pragma once
// The AlphaSolver concept (SPEC §4): given fixed planes, set the scales of a matrix in closed
// form to minimise an objective against a target. The weight-space objective ||W - W_hat||^2
// is the one every solver must accept; the activation-aware and output-space objectives come
// with the solvers themselves.
#include <concepts>

#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"

namespace multibool {

template <class S, class M>
concept AlphaSolver = BitPlaneStorage<M> && requires(const S& solver, M& m, MatrixView<const float> target) {
    solver.solve(m, target);
};

}  // namespace multibool
