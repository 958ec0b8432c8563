#pragma once
// The small dense symmetric positive semi-definite systems every AlphaSolver forms (normal
// equations N alpha = r with N = D^T H D), solved in double by Cholesky. Singular systems (two
// identical planes, inputs with no variance) drop the unknowns that depend on earlier ones.
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

#include "multibool/core/shape.hpp"

namespace multibool {

// An unknown whose Cholesky pivot is at most this fraction of its own diagonal entry is taken
// as a combination of the earlier ones. Relative to its own diagonal rather than to the trace,
// so that one outlier input a thousand times larger than the rest does not make every other
// unknown look singular (Cholesky is insensitive to such diagonal scaling).
inline constexpr double dependent_pivot_tolerance = 1e-10;

// Solves a x = b in place for a symmetric positive semi-definite a (n x n, row-major, n =
// b.size()): the lower triangle of a is read and overwritten by its Cholesky factor, b by x.
// An unknown j whose pivot falls below dependent_pivot_tolerance * a_jj is dropped: x_j = 0 and
// the other unknowns solve the system without it. When a is singular that is still a minimiser
// of x^T a x - 2 b^T x (b in the range of a, as for normal equations), and it is never NaN.
// Returns the number of dropped unknowns.
inline std::size_t solve_positive_semidefinite(std::span<double> a, std::span<double> b) {
    const std::size_t n = b.size();
    check_length("solve_positive_semidefinite", "the matrix", checked_product("solve_positive_semidefinite", n, n),
                 a.size());
    for (std::size_t e = 0; e < a.size(); ++e) {
        if (!std::isfinite(a[e])) {
            throw std::invalid_argument("solve_positive_semidefinite: matrix entry (" + std::to_string(e / n) + ", " +
                                        std::to_string(e % n) + ") is " + std::to_string(a[e]) +
                                        ", not a finite number");
        }
    }
    for (std::size_t e = 0; e < n; ++e) {
        if (!std::isfinite(b[e])) {
            throw std::invalid_argument("solve_positive_semidefinite: right-hand side entry " + std::to_string(e) +
                                        " is " + std::to_string(b[e]) + ", not a finite number");
        }
    }
    std::size_t dropped = 0;
    // Column by column: L_jj = sqrt(a_jj - sum_p L_jp^2), L_ij = (a_ij - sum_p L_ip L_jp) / L_jj.
    // A dropped column is all zeros, which is exactly the factor of a without row and column j.
    for (std::size_t j = 0; j < n; ++j) {
        double pivot = a[j * n + j];
        for (std::size_t p = 0; p < j; ++p) pivot -= a[j * n + p] * a[j * n + p];
        if (!(pivot > dependent_pivot_tolerance * a[j * n + j])) {
            ++dropped;
            for (std::size_t i = j; i < n; ++i) a[i * n + j] = 0.0;
            continue;
        }
        const double diagonal = std::sqrt(pivot);
        a[j * n + j] = diagonal;
        for (std::size_t i = j + 1; i < n; ++i) {
            double v = a[i * n + j];
            for (std::size_t p = 0; p < j; ++p) v -= a[i * n + p] * a[j * n + p];
            a[i * n + j] = v / diagonal;
        }
    }
    // L y = b, then L^T x = y; a dropped unknown (zero diagonal) is 0 in both.
    for (std::size_t j = 0; j < n; ++j) {
        if (a[j * n + j] == 0.0) {
            b[j] = 0.0;
            continue;
        }
        double v = b[j];
        for (std::size_t p = 0; p < j; ++p) v -= a[j * n + p] * b[p];
        b[j] = v / a[j * n + j];
    }
    for (std::size_t j = n; j-- > 0;) {
        if (a[j * n + j] == 0.0) continue;
        double v = b[j];
        for (std::size_t i = j + 1; i < n; ++i) v -= a[i * n + j] * b[i];
        b[j] = v / a[j * n + j];
    }
    return dropped;
}

}  // namespace multibool
