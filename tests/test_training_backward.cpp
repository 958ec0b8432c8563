#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <multibool/backends/scalar_backend.hpp>
#include <multibool/nn/multibool_linear.hpp>
#include <multibool/training/multibool_backward.hpp>
#include <multibool/training/scale_gradient.hpp>
#include <multibool/training/weight_gradient.hpp>

#include "test_support.hpp"

using namespace multibool;
using multibool::testing::fresh_seed;

namespace {

using testing::view;

// W_hat in double, row-major m x n.
template <class Matrix>
std::vector<double> dense_weight(const Matrix& m) {
    std::vector<double> w(m.rows() * m.cols(), 0.0);
    for (std::size_t i = 0; i < m.rows(); ++i) {
        for (std::size_t j = 0; j < m.cols(); ++j) {
            const std::size_t g = j / m.group_size();
            for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                w[i * m.cols() + j] += double(m.scale(k, i, g)) * m.sign(k, i, j);
            }
        }
    }
    return w;
}

// Gr = dY^T X in double, m x n.
std::vector<double> dense_gradient(const std::vector<float>& x, const std::vector<float>& dy, std::size_t tokens,
                                   std::size_t n, std::size_t m) {
    std::vector<double> gr(m * n, 0.0);
    for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t j = 0; j < n; ++j) gr[i * n + j] += double(dy[t * m + i]) * double(x[t * n + j]);
        }
    }
    return gr;
}

// L = sum(dY (.) X W_hat^T) in double, with alpha_k[i, g] moved by h, or x[t, j] moved by h.
struct Nudge {
    std::size_t k = 0, i = 0, g = 0;
    double on_scale = 0.0;
    std::size_t t = 0, j = 0;
    double on_input = 0.0;
};
template <class Matrix>
double loss(const Matrix& m, const std::vector<float>& x, const std::vector<float>& dy, std::size_t tokens,
            Nudge nudge) {
    const std::size_t n = m.cols(), rows = m.rows();
    double l = 0.0;
    for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t i = 0; i < rows; ++i) {
            double y = 0.0;
            for (std::size_t j = 0; j < n; ++j) {
                const std::size_t g = j / m.group_size();
                double w = 0.0;
                for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                    const bool moved = k == nudge.k && i == nudge.i && g == nudge.g;
                    w += (double(m.scale(k, i, g)) + (moved ? nudge.on_scale : 0.0)) * m.sign(k, i, j);
                }
                const double xj = double(x[t * n + j]) + (t == nudge.t && j == nudge.j ? nudge.on_input : 0.0);
                y += w * xj;
            }
            l += double(dy[t * rows + i]) * y;
        }
    }
    return l;
}

struct NoFlips {
    void operator()(std::size_t, MatrixView<const float>) const noexcept {}
};

// Counts what it allocates (from one thread: the workspace is allocated before any tile runs).
struct AllocationLog {
    std::size_t current = 0;
    std::size_t peak = 0;
    std::size_t largest = 0;
};
template <class T>
struct CountingAllocator {
    using value_type = T;
    AllocationLog* log;
    explicit CountingAllocator(AllocationLog* l) noexcept : log(l) {}
    template <class U>
    CountingAllocator(const CountingAllocator<U>& other) noexcept : log(other.log) {}
    T* allocate(std::size_t count) {
        const std::size_t bytes = count * sizeof(T);
        log->current += bytes;
        log->peak = std::max(log->peak, log->current);
        log->largest = std::max(log->largest, bytes);
        return std::allocator<T>().allocate(count);
    }
    void deallocate(T* p, std::size_t count) noexcept {
        log->current -= count * sizeof(T);
        std::allocator<T>().deallocate(p, count);
    }
    template <class U>
    bool operator==(const CountingAllocator<U>& other) const noexcept {
        return log == other.log;
    }
};

template <class F>
std::string invalid_argument_message(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("expected std::invalid_argument");
    return {};
}

// Calls f.template operator()<BitPlaneMatrix<K, G>>() for K 1..3 and G 32, 64, per row.
template <class F>
void for_each_training_shape(F&& f) {
    [&]<std::size_t... Ks>(std::index_sequence<Ks...>) {
        ((f.template operator()<BitPlaneMatrix<Ks + 1, 32>>(), f.template operator()<BitPlaneMatrix<Ks + 1, 64>>(),
          f.template operator()<BitPlaneMatrix<Ks + 1, per_row, float, std::uint8_t>>()),
         ...);
    }
    (std::make_index_sequence<3>{});
}

}  // namespace

TEST_CASE("backward: dX and dL/dalpha match a dense float64 reference", "[training][backward]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 9;
    for_each_training_shape([&]<class Matrix>() {
        for (const std::size_t n : {70u, 100u, 172u}) {
            for (const std::size_t tokens : {1u, 5u}) {
                CAPTURE(Matrix::kernels, Matrix::group_size_parameter, n, tokens);
                const auto m = testing::random_matrix<Matrix>(rows, n, rng);
                const auto x = testing::random_floats(tokens * n, rng);
                const auto dy = testing::random_floats(tokens * rows, rng);
                std::vector<float> dx(tokens * n);
                ScaleGradient gradient(m);
                const auto report = backward(ScalarBackend{}, m, view(x, tokens, n), view(dy, tokens, rows),
                                             view(dx, tokens, n), gradient, GradientTiling{4, 2}, NoFlips{});
                REQUIRE(report.peak_extra_bytes == gradient_workspace_bytes(n, rows, GradientTiling{4, 2}));

                const auto w = dense_weight(m);
                for (std::size_t t = 0; t < tokens; ++t) {
                    for (std::size_t j = 0; j < n; ++j) {
                        double reference = 0.0, magnitude = 0.0;
                        for (std::size_t i = 0; i < rows; ++i) {
                            reference += double(dy[t * rows + i]) * w[i * n + j];
                            magnitude += std::abs(double(dy[t * rows + i]) * w[i * n + j]);
                        }
                        REQUIRE(dx[t * n + j] == Approx(reference).margin(1e-5 * magnitude + 1e-6));
                    }
                }
                const auto gr = dense_gradient(x, dy, tokens, n, rows);
                for (std::size_t k = 0; k < Matrix::kernels; ++k) {
                    for (std::size_t i = 0; i < rows; ++i) {
                        for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                            double reference = 0.0, magnitude = 0.0;
                            for (std::size_t j = m.group_begin(g); j < m.group_end(g); ++j) {
                                reference += gr[i * n + j] * m.sign(k, i, j);
                                magnitude += std::abs(gr[i * n + j]);
                            }
                            REQUIRE(gradient(k, i, g) == Approx(reference).margin(1e-5 * magnitude + 1e-6));
                        }
                    }
                }
            }
        }
    });
}

TEMPLATE_TEST_CASE("backward: dL/dalpha and dX match finite differences of sum(dY (.) X W_hat^T)",
                   "[training][backward]", (BitPlaneMatrix<2, 32>), (BitPlaneMatrix<3, per_row>),
                   (BitPlaneMatrix<1, 64, float, std::uint16_t>)) {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 5, n = 70, tokens = 3;
    const auto m = testing::random_matrix<TestType>(rows, n, rng);
    const auto x = testing::random_floats(tokens * n, rng);
    const auto dy = testing::random_floats(tokens * rows, rng);
    std::vector<float> dx(tokens * n);
    ScaleGradient gradient(m);
    backward(ScalarBackend{}, m, view(x, tokens, n), view(dy, tokens, rows), view(dx, tokens, n), gradient,
             GradientTiling{2, 1}, NoFlips{});

    // L is linear in each scale and each input, so a central difference is exact up to rounding.
    const double h = 1e-3;
    for (std::size_t k = 0; k < TestType::kernels; ++k) {
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
                const double plus = loss(m, x, dy, tokens, {k, i, g, h});
                const double minus = loss(m, x, dy, tokens, {k, i, g, -h});
                CAPTURE(k, i, g);
                REQUIRE(gradient(k, i, g) == Approx((plus - minus) / (2 * h)).epsilon(1e-4).margin(1e-4));
            }
        }
    }
    for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t j = 0; j < n; ++j) {
            Nudge up, down;
            up.t = down.t = t;
            up.j = down.j = j;
            up.on_input = h;
            down.on_input = -h;
            CAPTURE(t, j);
            const double difference = (loss(m, x, dy, tokens, up) - loss(m, x, dy, tokens, down)) / (2 * h);
            REQUIRE(dx[t * n + j] == Approx(difference).epsilon(1e-4).margin(1e-4));
        }
    }
}

TEST_CASE("for_each_gradient_tile: the tiles make up dY^T X, identically for any tiling and thread count",
          "[training][backward]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 150, n = 100, tokens = 5;
    using Matrix = BitPlaneMatrix<3, 32>;
    const auto m = testing::random_matrix<Matrix>(rows, n, rng);

    // Small integers: every Gr_ij is exact in float, so the tiles must equal the reference exactly.
    {
        const auto x = testing::small_integers(tokens * n, rng);
        const auto dy = testing::small_integers(tokens * rows, rng);
        const auto reference = dense_gradient(x, dy, tokens, n, rows);
        for (const std::size_t tile_rows : {1u, 7u, 64u}) {
            for (const std::size_t threads : {1u, 2u, 3u}) {
                CAPTURE(tile_rows, threads);
                std::vector<double> assembled(rows * n, -1.0);
                std::vector<int> seen(rows, 0);
                std::vector<int> misshapen(rows, 0);  // per first row: tiles arrive from several threads
                for_each_gradient_tile(view(x, tokens, n), view(dy, tokens, rows), {tile_rows, threads},
                                       [&](std::size_t first_row, MatrixView<const float> tile) {
                                           misshapen[first_row] =
                                               first_row % tile_rows != 0 ||
                                               tile.rows() != std::min(tile_rows, rows - first_row) || tile.cols() != n;
                                           for (std::size_t r = 0; r < tile.rows(); ++r) {
                                               ++seen[first_row + r];
                                               for (std::size_t j = 0; j < n; ++j) {
                                                   assembled[(first_row + r) * n + j] = tile(r, j);
                                               }
                                           }
                                       });
                REQUIRE(std::all_of(misshapen.begin(), misshapen.end(), [](int bad) { return bad == 0; }));
                REQUIRE(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
                REQUIRE(assembled == reference);
            }
        }
    }

    // Random floats: bit-identical Gr, dX and dL/dalpha across tilings and thread counts.
    const auto x = testing::random_floats(tokens * n, rng);
    const auto dy = testing::random_floats(tokens * rows, rng);
    std::vector<float> first_gr, first_dx, first_alpha;
    for (const std::size_t tile_rows : {1u, 7u, 64u}) {
        for (const std::size_t threads : {1u, 2u, 3u}) {
            CAPTURE(tile_rows, threads);
            std::vector<float> gr(rows * n), dx(tokens * n);
            ScaleGradient gradient(m);
            backward(ScalarBackend{}, m, view(x, tokens, n), view(dy, tokens, rows), view(dx, tokens, n), gradient,
                     {tile_rows, threads}, [&](std::size_t first_row, MatrixView<const float> tile) {
                         std::copy(tile.data().begin(), tile.data().end(), gr.begin() + first_row * n);
                     });
            const std::vector<float> alpha(gradient.data().begin(), gradient.data().end());
            if (first_gr.empty()) {
                first_gr = gr;
                first_dx = dx;
                first_alpha = alpha;
            } else {
                REQUIRE(std::memcmp(gr.data(), first_gr.data(), gr.size() * sizeof(float)) == 0);
                REQUIRE(std::memcmp(dx.data(), first_dx.data(), dx.size() * sizeof(float)) == 0);
                REQUIRE(std::memcmp(alpha.data(), first_alpha.data(), alpha.size() * sizeof(float)) == 0);
            }
        }
    }
}

TEST_CASE("backward: the peak extra memory is gradient_workspace_bytes, never an m x n buffer",
          "[training][backward]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 150, n = 172, tokens = 5;
    using Matrix = BitPlaneMatrix<2, 64>;
    const auto m = testing::random_matrix<Matrix>(rows, n, rng);
    const auto x = testing::random_floats(tokens * n, rng);
    const auto dy = testing::random_floats(tokens * rows, rng);
    std::vector<float> dx(tokens * n);

    // Documented formula: workers * (min(tile_rows, m) * n * 4 + sizeof(float*)).
    STATIC_REQUIRE(gradient_workspace_bytes(172, 150, {7, 3}) == 3 * (7 * 172 * 4 + sizeof(float*)));
    STATIC_REQUIRE(gradient_workspace_bytes(172, 150, {64, 8}) == 3 * (64 * 172 * 4 + sizeof(float*)));
    STATIC_REQUIRE(gradient_workspace_bytes(172, 5, {64, 2}) == 1 * (5 * 172 * 4 + sizeof(float*)));
    STATIC_REQUIRE(gradient_workspace_bytes(0, 150, {}) == 0);

    for (const GradientTiling tiling : {GradientTiling{1, 1}, GradientTiling{7, 3}, GradientTiling{64, 2},
                                        GradientTiling{64, 8}, GradientTiling{32, 0}}) {
        CAPTURE(tiling.tile_rows, tiling.threads);
        AllocationLog log;
        ScaleGradient gradient(m);
        const auto report = backward(ScalarBackend{}, m, view(x, tokens, n), view(dy, tokens, rows),
                                     view(dx, tokens, n), gradient, tiling, NoFlips{}, CountingAllocator<float>(&log));
        REQUIRE(log.peak == gradient_workspace_bytes(n, rows, tiling));
        REQUIRE(report.peak_extra_bytes == log.peak);
        REQUIRE(log.current == 0);
        REQUIRE(log.largest < rows * n * sizeof(float));
    }
}

TEST_CASE("backward through a MultiBoolLinear layer uses its backend and weights", "[training][backward]") {
    const auto seed = fresh_seed();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t rows = 40, n = 172, tokens = 5;
    using Layer = MultiBoolLinear<2, 64>;
    const Layer layer(testing::random_matrix<Layer::matrix_type>(rows, n, rng));
    const auto x = testing::random_floats(tokens * n, rng);
    const auto dy = testing::random_floats(tokens * rows, rng);
    std::vector<float> dx(tokens * n), dx_scalar(tokens * n);
    ScaleGradient<2> gradient(layer.weights()), gradient_scalar(layer.weights());
    std::atomic<std::size_t> tiles{0};  // tiles arrive from two threads
    backward(layer, view(x, tokens, n), view(dy, tokens, rows), view(dx, tokens, n), gradient, {16, 2},
             [&](std::size_t, MatrixView<const float>) { ++tiles; });
    REQUIRE(tiles == 3);
    backward(ScalarBackend{}, layer.weights(), view(x, tokens, n), view(dy, tokens, rows), view(dx_scalar, tokens, n),
             gradient_scalar, {16, 2}, NoFlips{});
    // The scale gradient does not involve the backend; dX may differ by the backend's rounding.
    REQUIRE(std::equal(gradient.data().begin(), gradient.data().end(), gradient_scalar.data().begin()));
    for (std::size_t e = 0; e < dx.size(); ++e) REQUIRE(dx[e] == Approx(dx_scalar[e]).margin(1e-4));

    // Calling again accumulates; clear() starts over.
    backward(layer, view(x, tokens, n), view(dy, tokens, rows), view(dx, tokens, n), gradient, {16, 1}, NoFlips{});
    for (std::size_t e = 0; e < gradient.data().size(); ++e) {
        REQUIRE(gradient.data()[e] == Approx(2 * gradient_scalar.data()[e]).margin(1e-5));
    }
    gradient.clear();
    REQUIRE(std::all_of(gradient.data().begin(), gradient.data().end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("backward and its pieces refuse mismatched shapes, naming them", "[training][backward]") {
    std::mt19937_64 rng(7);
    using Matrix = BitPlaneMatrix<2, 32>;
    const auto m = testing::random_matrix<Matrix>(10, 70, rng);
    std::vector<float> x(5 * 70), dy(5 * 10), dx(5 * 70), short_dy(4 * 10), wide_x(5 * 71);
    ScaleGradient gradient(m);
    const auto call = [&](MatrixView<const float> xv, MatrixView<const float> dyv, MatrixView<float> dxv,
                          ScaleGradient<2>& sg, GradientTiling tiling = {}) {
        return [=, &m, &sg] { backward(ScalarBackend{}, m, xv, dyv, dxv, sg, tiling, NoFlips{}); };
    };
    using Catch::Matchers::Contains;

    REQUIRE_THAT(
        invalid_argument_message([&] { for_each_gradient_tile(view(x, 5, 70), view(short_dy, 4, 10), {}, NoFlips{}); }),
        Contains("5x70") && Contains("4x10"));
    REQUIRE_THAT(invalid_argument_message([&] {
                     for_each_gradient_tile(view(x, 5, 70), view(dy, 5, 10), {0, 1}, NoFlips{});
                 }),
                 Contains("tile_rows"));
    REQUIRE_THAT(invalid_argument_message(call(view(wide_x, 5, 71), view(dy, 5, 10), view(dx, 5, 70), gradient)),
                 Contains("10x70") && Contains("5x71"));
    REQUIRE_THAT(invalid_argument_message(call(view(x, 5, 70), view(short_dy, 4, 10), view(dx, 5, 70), gradient)),
                 Contains("4x10") && Contains("same T"));
    REQUIRE_THAT(invalid_argument_message(call(view(x, 5, 70), view(dy, 5, 10), view(wide_x, 5, 71), gradient)),
                 Contains("dX is 5x71") && Contains("5x70"));
    ScaleGradient<2> wrong(10, 2);
    REQUIRE_THAT(invalid_argument_message(call(view(x, 5, 70), view(dy, 5, 10), view(dx, 5, 70), wrong)),
                 Contains("10 rows x 2 groups") && Contains("10x70"));
    REQUIRE_THAT(invalid_argument_message(call(view(x, 5, 70), view(dy, 5, 10), view(dx, 5, 70), gradient, {0, 1})),
                 Contains("tile_rows"));
    REQUIRE_THAT(invalid_argument_message([&] { gradient.accumulate(m, 8, view(x, 5, 70)); }),
                 Contains("5x70 tile at row 8") && Contains("10x70"));
    REQUIRE_THAT(invalid_argument_message([&] { gradient.accumulate(m, 0, view(wide_x, 5, 71)); }), Contains("5x71"));
}
