#pragma once
// The (K, G) pairs the tool is compiled for, and the dispatch of a run-time (k, g) to the matching
// compile-time instantiation, generated from the two lists so that adding a value is one edit.
// examples/CMakeLists.txt reads supported_kernels from this file to make one fine-tuning
// translation unit per K.
#include <algorithm>
#include <array>
#include <cstddef>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "llama/cli/options.hpp"

namespace multibool::llama::cli {

inline constexpr std::size_t supported_kernels[] = {1, 2, 3, 4};
inline constexpr std::size_t supported_groups[] = {32, 64, 128};
inline constexpr std::size_t default_group = 64;

inline std::string supported_values() {
    const auto list = [](std::span<const std::size_t> values) {
        std::string text;
        for (std::size_t v : values) text += (text.empty() ? "" : ", ") + std::to_string(v);
        return "{" + text + "}";
    };
    return "K in " + list(supported_kernels) + " and G in " + list(supported_groups);
}

inline bool is_supported_kernels(std::size_t k) {
    return std::ranges::find(supported_kernels, k) != std::end(supported_kernels);
}

inline bool is_supported(std::size_t k, std::size_t g) {
    return is_supported_kernels(k) && std::ranges::find(supported_groups, g) != std::end(supported_groups);
}

inline void require_supported(std::size_t k, std::size_t g) {
    if (!is_supported(k, g)) {
        throw UsageError("K=" + std::to_string(k) + ", G=" + std::to_string(g) +
                         " is not supported; supported: " + supported_values());
    }
}

namespace detail {

// Calls f.template operator()<values[I]>() for the one I with values[I] == value; false if none.
template <const auto& values, class F, std::size_t... I>
bool dispatch_value(std::size_t value, F&& f, std::index_sequence<I...>) {
    return ((value == values[I] ? (f.template operator()<values[I]>(), true) : false) || ...);
}

template <const auto& values, class F>
void dispatch(std::size_t value, F&& f) {
    if (!dispatch_value<values>(value, f, std::make_index_sequence<std::size(values)>{})) {
        throw std::logic_error("multibool-llama: no instantiation for " + std::to_string(value));
    }
}

}  // namespace detail

// Calls f.template operator()<K>() for a supported k (checked by the caller).
template <class F>
void with_kernels(std::size_t k, F&& f) {
    detail::dispatch<supported_kernels>(k, f);
}

// Calls f.template operator()<G>() for a supported g (checked by the caller).
template <class F>
void with_group(std::size_t g, F&& f) {
    detail::dispatch<supported_groups>(g, f);
}

// Calls f.template operator()<K, G>() for the instantiation matching (k, g); a usage error if
// the pair is not supported.
template <class F>
void with_instantiation(std::size_t k, std::size_t g, F&& f) {
    require_supported(k, g);
    with_kernels(k, [&]<std::size_t K>() { with_group(g, [&]<std::size_t G>() { f.template operator()<K, G>(); }); });
}

// Each<v>... for every v of values, as one type list.
template <const auto& values, template <std::size_t> class Each, template <class...> class List>
struct for_every_value {
    template <std::size_t... I>
    static auto make(std::index_sequence<I...>) -> List<Each<values[I]>...>;
    using type = decltype(make(std::make_index_sequence<std::size(values)>{}));
};

// Every supported (K, G), K-major: Each<K, G>... as one type list, e.g. the alternatives of a variant.
template <template <std::size_t, std::size_t> class Each, template <class...> class List>
struct for_every_instantiation {
    template <std::size_t... I>
    static auto make(std::index_sequence<I...>) -> List<
        Each<supported_kernels[I / std::size(supported_groups)], supported_groups[I % std::size(supported_groups)]>...>;
    using type = decltype(make(std::make_index_sequence<std::size(supported_kernels) * std::size(supported_groups)>{}));
};

}  // namespace multibool::llama::cli
