#pragma once
// BooleanTrainer: one B step of a bit-plane layer (docs/METHOD.md §5) — backward, the scale gradient and
// the flips a FlipOptimizer decides, tile by tile — on the matrix of record the trainer owns.
// The α step (closed form or AdamW) is the caller's, on matrix() between steps.
//
// Why flipping inside the backward pass is safe: dX is computed from the bits before the step,
// before any tile is formed; each gradient tile covers rows no other tile touches, and its scale
// gradient is accumulated before the policy sees it. So every flip, and every number the step
// returns, is decided from this step's gradient and the bits as they were when the step began.
#include <cstddef>
#include <mutex>
#include <utility>

#include "multibool/backends/product_backend.hpp"
#include "multibool/core/bit_plane_storage.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/training/flip_optimizer.hpp"
#include "multibool/training/multibool_backward.hpp"
#include "multibool/training/scale_gradient.hpp"
#include "multibool/training/weight_gradient.hpp"

namespace multibool {

struct TrainStepReport {
    FlipStatistics statistics;  // summed over every tile
    // backward's gradient tiles: gradient_workspace_bytes(cols, rows, tiling). A policy's per-row
    // scratch (at most one row of floats, or of flip candidates, per thread) is not counted.
    std::size_t peak_extra_bytes = 0;
};

template <BitPlaneStorage Matrix, FlipOptimizer<Matrix> Policy, class Backend>
    requires ProductBackend<Backend, Matrix>
class BooleanTrainer {
public:
    BooleanTrainer(Matrix matrix, Policy policy, Backend backend = {}, GradientTiling tiling = {})
        : matrix_(std::move(matrix)),
          policy_(std::move(policy)),
          backend_(std::move(backend)),
          tiling_(tiling),
          scale_gradient_(matrix_) {}

    // For X (T x cols) and dY = dL/dY (T x rows): writes dX = dY W_hat (the bits before the step),
    // replaces scale_gradient() with this step's dL/dalpha and flips the bits the policy chooses.
    TrainStepReport step(MatrixView<const float> x, MatrixView<const float> dy, MatrixView<float> dx,
                         FlipContext context) {
        scale_gradient_.clear();
        policy_.begin_step(context);
        TrainStepReport report;
        std::mutex merge;  // statistics sum exactly, so the merge order does not matter
        report.peak_extra_bytes = backward(backend_, matrix_, x, dy, dx, scale_gradient_, tiling_,
                                           [&](std::size_t first_row, MatrixView<const float> tile) {
                                               const FlipStatistics tile_statistics =
                                                   policy_.apply(matrix_, first_row, tile);
                                               const std::lock_guard lock(merge);
                                               report.statistics += tile_statistics;
                                           })
                                      .peak_extra_bytes;
        policy_.end_step(report.statistics);
        return report;
    }

    [[nodiscard]] const Matrix& matrix() const noexcept { return matrix_; }
    // For the α step between B steps (e.g. WeightSpaceSolver{}.solve(trainer.matrix(), teacher)).
    [[nodiscard]] Matrix& matrix() noexcept { return matrix_; }
    // dL/dalpha of the latest step, at the scales and bits it began with.
    [[nodiscard]] const ScaleGradient<Matrix::kernels>& scale_gradient() const noexcept { return scale_gradient_; }
    [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
    [[nodiscard]] const Backend& backend() const noexcept { return backend_; }
    [[nodiscard]] GradientTiling tiling() const noexcept { return tiling_; }

private:
    Matrix matrix_;
    Policy policy_;
    Backend backend_;
    GradientTiling tiling_;
    ScaleGradient<Matrix::kernels> scale_gradient_;
};

}  // namespace multibool
