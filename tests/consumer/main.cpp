// Exits 0 when a MultiBoolLinear<3, 128> agrees with the dense product of its own weights.
#include <multibool/multibool.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    const std::size_t rows = 16, cols = 200;
    std::vector<float> w(rows * cols), x(cols);
    for (std::size_t e = 0; e < w.size(); ++e) w[e] = std::sin(0.37f * float(e));
    for (std::size_t j = 0; j < cols; ++j) x[j] = std::cos(0.11f * float(j));
    const auto layer = multibool::MultiBoolLinear<3, 128>::from_dense({std::span<const float>(w), rows, cols});
    std::vector<float> y(rows);
    layer.forward(x, y);
    const auto dense = layer.weights().dequantize();
    for (std::size_t i = 0; i < rows; ++i) {
        double reference = 0.0;
        for (std::size_t j = 0; j < cols; ++j) reference += double(dense[i * cols + j]) * x[j];
        if (std::fabs(reference - y[i]) > 1e-3) {
            std::printf("row %zu: %f != %f\n", i, double(y[i]), reference);
            return 1;
        }
    }
    std::printf("consumer OK: %zux%zu at %.3f bits per weight\n", rows, cols, layer.weights().bits_per_weight());
    return 0;
}
