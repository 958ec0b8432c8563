#pragma once
// Sizes and shape checks shared by every layer: products of dimensions that refuse to wrap
// around, and the length check behind every "expected N" error.
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>

namespace multibool {

// a * b, or std::length_error naming what was being sized when it does not fit in size_t.
inline std::size_t checked_product(const char* what, std::size_t a, std::size_t b) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) {
        throw std::length_error(std::string(what) + ": " + std::to_string(a) + " x " + std::to_string(b) +
                                " does not fit in memory sizes");
    }
    return a * b;
}

inline void check_length(const char* what, const char* name, std::size_t expected, std::size_t found) {
    if (expected != found) {
        throw std::invalid_argument(std::string(what) + ": " + name + " has " + std::to_string(found) +
                                    " elements, expected " + std::to_string(expected));
    }
}

}  // namespace multibool
