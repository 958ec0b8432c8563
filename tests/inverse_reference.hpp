#pragma once
// A float64 reference shared by the GPTQ and error-feedback tests: the explicit inverse that
// Optimal Brain Quantization's form of their column loop downdates.
#include <cstddef>
#include <vector>

namespace multibool::testing {

// The inverse of an n x n symmetric positive definite matrix by Gauss-Jordan elimination.
inline std::vector<double> inverse(std::vector<double> a, std::size_t n) {
    std::vector<double> inv(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) inv[i * n + i] = 1.0;
    for (std::size_t c = 0; c < n; ++c) {
        const double pivot = a[c * n + c];
        for (std::size_t k = 0; k < n; ++k) a[c * n + k] /= pivot, inv[c * n + k] /= pivot;
        for (std::size_t r = 0; r < n; ++r) {
            if (r == c) continue;
            const double f = a[r * n + c];
            for (std::size_t k = 0; k < n; ++k) a[r * n + k] -= f * a[c * n + k], inv[r * n + k] -= f * inv[c * n + k];
        }
    }
    return inv;
}

}  // namespace multibool::testing
