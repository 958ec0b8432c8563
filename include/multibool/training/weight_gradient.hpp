#pragma once
// The weight gradient Gr = dY^T X (m x n, Gr_ij = sum_t dy_ti x_tj), formed one tile of rows at a
// time and handed to a consumer at once, so that a dense m x n float gradient never exists (docs/METHOD.md §5).
#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "multibool/backends/thread_pool.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/core/shape.hpp"

namespace multibool {

struct GradientTiling {
    std::size_t tile_rows = 64;  // rows of Gr per tile; must be at least 1
    std::size_t threads = 1;     // 0 counts as 1
};

namespace detail {

template <class T>
std::string shape_of(MatrixView<T> v) {
    return std::to_string(v.rows()) + "x" + std::to_string(v.cols());
}

// How many workers (each holding one tile buffer) share the tiles: the same clamp as parallel_for.
constexpr std::size_t gradient_workers(std::size_t m, GradientTiling tiling) noexcept {
    const std::size_t tiles = m / tiling.tile_rows + (m % tiling.tile_rows != 0 ? 1 : 0);
    return std::clamp<std::size_t>(tiling.threads, 1, std::max<std::size_t>(tiles, 1));
}

// One tile buffer per worker plus the array of their pointers, all from the caller's allocator,
// allocated before any tile is computed so the peak does not depend on scheduling.
template <class Allocator>
class TileBuffers {
    using FloatTraits = std::allocator_traits<Allocator>;
    using PointerAllocator = typename FloatTraits::template rebind_alloc<float*>;
    using PointerTraits = std::allocator_traits<PointerAllocator>;
    static_assert(std::is_same_v<typename FloatTraits::pointer, float*> &&
                      std::is_same_v<typename PointerTraits::pointer, float**>,
                  "for_each_gradient_tile: the allocator must hand out plain pointers");

public:
    TileBuffers(const Allocator& allocator, std::size_t count, std::size_t floats)
        : floats_allocator_(allocator), pointer_allocator_(allocator), count_(count), floats_(floats) {
        slots_ = PointerTraits::allocate(pointer_allocator_, count_);
        try {
            for (; made_ < count_; ++made_) slots_[made_] = FloatTraits::allocate(floats_allocator_, floats_);
        } catch (...) {
            release();
            throw;
        }
    }
    TileBuffers(const TileBuffers&) = delete;
    TileBuffers& operator=(const TileBuffers&) = delete;
    ~TileBuffers() { release(); }

    // Each call hands out a different buffer; safe to call from several threads.
    [[nodiscard]] std::span<float> claim() noexcept {
        const std::size_t slot = next_.fetch_add(1);
        assert(slot < count_ && "for_each_gradient_tile: more workers than tile buffers");
        return {slots_[slot], floats_};
    }

private:
    void release() noexcept {
        for (std::size_t s = 0; s < made_; ++s) FloatTraits::deallocate(floats_allocator_, slots_[s], floats_);
        PointerTraits::deallocate(pointer_allocator_, slots_, count_);
    }

    Allocator floats_allocator_;
    PointerAllocator pointer_allocator_;
    std::size_t count_;
    std::size_t floats_;
    std::size_t made_ = 0;
    float** slots_ = nullptr;
    std::atomic<std::size_t> next_{0};
};

// Register tiles of Gr: block_rows x block_columns sums stay in registers over every token (16
// vector registers at the widest width the compiler targets), so the inner loop does two loads
// per block_rows multiply-adds and never stores.
inline constexpr std::size_t gradient_block_rows = 4;
#if defined(__AVX512F__)
inline constexpr std::size_t gradient_block_columns = 64;
#else
inline constexpr std::size_t gradient_block_columns = 32;
#endif

// tile(r, j) for r in [r0, r0 + Rows), j in [j0, j0 + Columns): sum_t dy(t, first_row + r) x(t, j),
// the t-sum in ascending t.
template <std::size_t Rows, std::size_t Columns>
void gradient_block(MatrixView<const float> x, MatrixView<const float> dy, std::size_t first_row, std::size_t r0,
                    std::size_t j0, MatrixView<float> tile) noexcept {
    float sums[Rows][Columns] = {};
    for (std::size_t t = 0; t < x.rows(); ++t) {
        const float* xt = x.row(t).data() + j0;
        const float* dyt = dy.row(t).data() + first_row + r0;
        for (std::size_t r = 0; r < Rows; ++r) {
            const float c = dyt[r];
            for (std::size_t j = 0; j < Columns; ++j) sums[r][j] += c * xt[j];
        }
    }
    for (std::size_t r = 0; r < Rows; ++r) std::copy_n(sums[r], Columns, tile.row(r0 + r).data() + j0);
}

// tile(r, j) as above for rows [r0, r_end) and columns [j0, j_end), one row at a time: the edges
// the register blocks do not cover, with the same sums in the same order.
inline void gradient_edge(MatrixView<const float> x, MatrixView<const float> dy, std::size_t first_row, std::size_t r0,
                          std::size_t r_end, std::size_t j0, std::size_t j_end, MatrixView<float> tile) noexcept {
    for (std::size_t r = r0; r < r_end; ++r) {
        float* g = tile.row(r).data();
        std::fill(g + j0, g + j_end, 0.0f);
        for (std::size_t t = 0; t < x.rows(); ++t) {
            const float c = dy(t, first_row + r);
            const float* xt = x.row(t).data();
            for (std::size_t j = j0; j < j_end; ++j) g[j] += c * xt[j];
        }
    }
}

// tile = rows [first_row, first_row + tile.rows()) of dY^T X. Every Gr_ij is one t-sum in
// ascending t, so it is the same float whatever the tiling.
inline void gradient_rows(MatrixView<const float> x, MatrixView<const float> dy, std::size_t first_row,
                          MatrixView<float> tile) noexcept {
    constexpr std::size_t R = gradient_block_rows, C = gradient_block_columns;
    const std::size_t n = x.cols(), rows = tile.rows();
    const std::size_t block_rows = rows - rows % R, block_cols = n - n % C;
    for (std::size_t j0 = 0; j0 < block_cols; j0 += C) {
        for (std::size_t r0 = 0; r0 < block_rows; r0 += R) gradient_block<R, C>(x, dy, first_row, r0, j0, tile);
    }
    gradient_edge(x, dy, first_row, 0, block_rows, block_cols, n, tile);
    gradient_edge(x, dy, first_row, block_rows, rows, 0, n, tile);
}

}  // namespace detail

// The exact extra bytes for_each_gradient_tile allocates (all at once, so also its peak):
//   workers * (min(tile_rows, m) * n * sizeof(float) + sizeof(float*)),
//   workers = clamp(threads, 1, ceil(m / tile_rows)),
// and 0 when m or n is 0 (nothing to compute).
constexpr std::size_t gradient_workspace_bytes(std::size_t n, std::size_t m, GradientTiling tiling) noexcept {
    if (m == 0 || n == 0 || tiling.tile_rows == 0) return 0;
    return detail::gradient_workers(m, tiling) * (std::min(tiling.tile_rows, m) * n * sizeof(float) + sizeof(float*));
}

// Calls consume(first_row, tile) for the row tiles [first_row, first_row + tile_rows) of
// Gr = dY^T X, x being T x n and dy T x m. With threads > 1, consume runs concurrently for
// disjoint row ranges; each tile view is valid only during its call.
template <class Consume, class Allocator = std::allocator<float>>
void for_each_gradient_tile(MatrixView<const float> x, MatrixView<const float> dy, GradientTiling tiling,
                            Consume&& consume, const Allocator& allocator = {}) {
    if (x.rows() != dy.rows()) {
        throw std::invalid_argument("for_each_gradient_tile: X is " + detail::shape_of(x) + " and dY is " +
                                    detail::shape_of(dy) + "; they need the same number of rows (tokens)");
    }
    if (tiling.tile_rows == 0) throw std::invalid_argument("for_each_gradient_tile: tile_rows must be at least 1");
    const std::size_t n = x.cols(), m = dy.cols();
    if (m == 0 || n == 0) return;
    const std::size_t tile_rows = tiling.tile_rows;
    const std::size_t workers = detail::gradient_workers(m, tiling);
    detail::TileBuffers<Allocator> buffers(
        allocator, workers, checked_product("for_each_gradient_tile tile buffer", std::min(tile_rows, m), n));
    parallel_for(workers, m, tile_rows, [&](std::size_t begin, std::size_t end) {
        const std::span<float> buffer = buffers.claim();
        for (std::size_t i0 = begin; i0 < end; i0 += tile_rows) {
            const std::size_t rows = std::min(tile_rows, end - i0);
            const MatrixView<float> tile(buffer.first(rows * n), rows, n);
            detail::gradient_rows(x, dy, i0, tile);
            consume(i0, MatrixView<const float>(tile));
        }
    });
}

}  // namespace multibool
