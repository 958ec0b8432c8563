#pragma once
// A MultiBoolLinear whose kernel count K is chosen at run time (1..MaxK), so one model type can
// hold layers with different K, as a bit-budget allocation (Tran & Nguyen, ICLR 2026) produces. Each K is its
// own compile-time instantiation; a call dispatches once per product, not per weight. MaxK defaults
// to 4, the kernel counts the allocation considers (kernel_allocation.hpp): past 4 bits per weight
// a layer gains little, and every K instantiates the whole layer again.
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

#include "multibool/backends/default_backend.hpp"
#include "multibool/core/matrix_view.hpp"
#include "multibool/nn/multibool_linear.hpp"

namespace multibool {

namespace detail {

template <std::size_t G, class Scale, class Word, class Backend, class Ks>
struct KernelCountVariant;

template <std::size_t G, class Scale, class Word, class Backend, std::size_t... Ks>
struct KernelCountVariant<G, Scale, Word, Backend, std::index_sequence<Ks...>> {
    using type = std::variant<MultiBoolLinear<Ks + 1, G, Scale, Word, Backend>...>;
};

}  // namespace detail

template <std::size_t G, std::size_t MaxK = 4, class Scale = float, class Word = std::uint64_t,
          class Backend = DefaultBackend>
class VariableKernelLinear {
public:
    using layer_variant =
        typename detail::KernelCountVariant<G, Scale, Word, Backend, std::make_index_sequence<MaxK>>::type;
    static constexpr std::size_t max_kernels = MaxK;

    VariableKernelLinear() = default;
    template <std::size_t K>
    explicit VariableKernelLinear(MultiBoolLinear<K, G, Scale, Word, Backend> layer) : layer_(std::move(layer)) {}

    // The layer make.template operator()<K>() returns, for K = k given at run time.
    template <class F>
    static VariableKernelLinear with_kernels(std::size_t k, F&& make) {
        VariableKernelLinear result;
        bool made = false;
        [&]<std::size_t... Ks>(std::index_sequence<Ks...>) {
            ((k == Ks + 1 ? (result.layer_ = make.template operator()<Ks + 1>(), made = true) : false), ...);
        }
        (std::make_index_sequence<MaxK>{});
        if (!made) {
            throw std::invalid_argument("VariableKernelLinear: K=" + std::to_string(k) + " is outside 1.." +
                                        std::to_string(MaxK));
        }
        return result;
    }

    [[nodiscard]] std::size_t kernels() const noexcept { return layer_.index() + 1; }
    [[nodiscard]] const layer_variant& layer() const noexcept { return layer_; }
    [[nodiscard]] std::size_t in_features() const noexcept {
        return std::visit([](const auto& l) { return l.in_features(); }, layer_);
    }
    [[nodiscard]] std::size_t out_features() const noexcept {
        return std::visit([](const auto& l) { return l.out_features(); }, layer_);
    }
    [[nodiscard]] std::size_t storage_bytes() const noexcept {
        return std::visit([](const auto& l) { return l.weights().storage_bytes(); }, layer_);
    }

    void forward(std::span<const float> x, std::span<float> y) const {
        std::visit([&](const auto& l) { l.forward(x, y); }, layer_);
    }
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        std::visit([&](const auto& l) { l.forward(xs, ys); }, layer_);
    }
    void backward_input(std::span<const float> dy, std::span<float> dx) const {
        std::visit([&](const auto& l) { l.backward_input(dy, dx); }, layer_);
    }
    void backward_input(MatrixView<const float> dys, MatrixView<float> dxs) const {
        std::visit([&](const auto& l) { l.backward_input(dys, dxs); }, layer_);
    }

private:
    layer_variant layer_;
};

}  // namespace multibool
