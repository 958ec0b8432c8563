#pragma once
// A small row-major 2-D view over a contiguous buffer (std::mdspan is C++23; this is the C++20
// stand-in the public API uses for activation batches and dense matrices).
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

namespace multibool {

template <class T>
class MatrixView {
public:
    MatrixView() = default;
    MatrixView(std::span<T> data, std::size_t rows, std::size_t cols) : data_(data), rows_(rows), cols_(cols) {
        // Checked by division first so that a rows * cols that wraps around cannot pass.
        if ((cols != 0 && rows > data.size() / cols) || data.size() != rows * cols) {
            throw std::invalid_argument("MatrixView: buffer of " + std::to_string(data.size()) +
                                        " elements does not hold " + std::to_string(rows) + "x" + std::to_string(cols));
        }
    }
    // A view of U converts to a view of T exactly when a span would (e.g. float to const float).
    template <class U>
    MatrixView(MatrixView<U> other) noexcept requires std::is_convertible_v<U (*)[], T (*)[]>
        : data_(other.data()), rows_(other.rows()), cols_(other.cols()) {}

    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
    [[nodiscard]] std::span<T> data() const noexcept { return data_; }
    [[nodiscard]] std::span<T> row(std::size_t i) const noexcept { return data_.subspan(i * cols_, cols_); }
    [[nodiscard]] T& operator()(std::size_t i, std::size_t j) const noexcept { return data_[i * cols_ + j]; }

private:
    std::span<T> data_{};
    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
};

template <class T>
MatrixView(std::span<T>, std::size_t, std::size_t) -> MatrixView<T>;

}  // namespace multibool
