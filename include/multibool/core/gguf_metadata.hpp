#pragma once
// GGUF's typed key-value metadata (ggml's docs/gguf.md): the 13 value types, a value that keeps
// its type so that a file's metadata can be written back unchanged, and a table in file order
// with typed lookups whose errors name the file and the key.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "multibool/core/binary_io.hpp"

namespace multibool::gguf {

enum class ValueType : std::uint32_t {
    uint8 = 0,
    int8 = 1,
    uint16 = 2,
    int16 = 3,
    uint32 = 4,
    int32 = 5,
    float32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    uint64 = 10,
    int64 = 11,
    float64 = 12,
};

inline constexpr std::uint32_t value_type_count = 13;

[[nodiscard]] constexpr std::string_view value_type_name(ValueType type) noexcept {
    constexpr std::string_view names[value_type_count] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                                          "int32",  "float32", "bool",   "string", "array",
                                                          "uint64", "int64",   "float64"};
    const auto index = static_cast<std::uint32_t>(type);
    return index < value_type_count ? names[index] : std::string_view("unknown");
}

// Every type but string and array is a fixed-size scalar.
[[nodiscard]] constexpr bool is_scalar_type(ValueType type) noexcept {
    return static_cast<std::uint32_t>(type) < value_type_count && type != ValueType::string && type != ValueType::array;
}

// Calls f.template operator()<T>() with the C++ type a scalar of `type` is stored as (bool: one
// byte, 0 or 1), so that reading, checking and writing scalars is written once. `type` must be a
// scalar type.
template <class F>
constexpr decltype(auto) visit_scalar_type(ValueType type, F&& f) {
    switch (type) {
        case ValueType::uint8:
            return f.template operator()<std::uint8_t>();
        case ValueType::int8:
            return f.template operator()<std::int8_t>();
        case ValueType::uint16:
            return f.template operator()<std::uint16_t>();
        case ValueType::int16:
            return f.template operator()<std::int16_t>();
        case ValueType::uint32:
            return f.template operator()<std::uint32_t>();
        case ValueType::int32:
            return f.template operator()<std::int32_t>();
        case ValueType::uint64:
            return f.template operator()<std::uint64_t>();
        case ValueType::int64:
            return f.template operator()<std::int64_t>();
        case ValueType::float32:
            return f.template operator()<float>();
        case ValueType::float64:
            return f.template operator()<double>();
        case ValueType::boolean:
            return f.template operator()<bool>();
        default:
            throw std::logic_error("gguf::visit_scalar_type: " + std::string(value_type_name(type)) +
                                   " is not a scalar type");
    }
}

// How a Value holds a scalar stored as T: widened, exactly (unsigned as uint64, signed as int64,
// floats as double).
template <class T>
using held_type =
    std::conditional_t<std::is_same_v<T, bool>, bool,
                       std::conditional_t<std::is_floating_point_v<T>, double,
                                          std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>>>;

// Bytes of one scalar in the file; 0 for string and array, whose size is in the data.
[[nodiscard]] constexpr std::size_t scalar_bytes(ValueType type) noexcept {
    if (!is_scalar_type(type)) return 0;
    return visit_scalar_type(type, []<class T>() { return sizeof(T); });
}

// One metadata value with its file type. Integers are held widened (unsigned ones as uint64,
// signed ones as int64) and float32 as double, all exactly, so writing back restores the bytes.
class Value {
public:
    using Scalar = std::variant<std::uint64_t, std::int64_t, double, bool, std::string>;

    Value() = default;
    Value(ValueType type, Scalar scalar) : type_(type), scalar_(std::move(scalar)) {}
    static Value array(ValueType element_type, std::vector<Value> elements) {
        Value v;
        v.type_ = ValueType::array;
        v.element_type_ = element_type;
        v.elements_ = std::move(elements);
        return v;
    }
    static Value text(std::string s) { return {ValueType::string, std::move(s)}; }
    static Value uint32(std::uint32_t x) { return {ValueType::uint32, std::uint64_t{x}}; }
    static Value float32(float x) { return {ValueType::float32, double{x}}; }
    static Value boolean(bool x) { return {ValueType::boolean, x}; }

    [[nodiscard]] ValueType type() const noexcept { return type_; }
    [[nodiscard]] ValueType element_type() const noexcept { return element_type_; }
    [[nodiscard]] std::span<const Value> elements() const noexcept { return elements_; }
    [[nodiscard]] const Scalar& scalar() const noexcept { return scalar_; }

    // The value as an integer of any integer type, if it is one.
    [[nodiscard]] std::optional<std::uint64_t> as_unsigned() const noexcept {
        if (const auto* u = std::get_if<std::uint64_t>(&scalar_); u && type_ != ValueType::array) return *u;
        if (const auto* s = std::get_if<std::int64_t>(&scalar_); s && *s >= 0) return static_cast<std::uint64_t>(*s);
        return std::nullopt;
    }
    [[nodiscard]] std::optional<std::int64_t> as_signed() const noexcept {
        if (const auto* s = std::get_if<std::int64_t>(&scalar_)) return *s;
        if (const auto* u = std::get_if<std::uint64_t>(&scalar_);
            u && type_ != ValueType::array && *u <= std::uint64_t(INT64_MAX)) {
            return static_cast<std::int64_t>(*u);
        }
        return std::nullopt;
    }
    [[nodiscard]] std::optional<double> as_real() const noexcept {
        if (const auto* d = std::get_if<double>(&scalar_)) return *d;
        return std::nullopt;
    }
    [[nodiscard]] const std::string* as_text() const noexcept { return std::get_if<std::string>(&scalar_); }
    [[nodiscard]] std::optional<bool> as_bool() const noexcept {
        if (const auto* b = std::get_if<bool>(&scalar_)) return *b;
        return std::nullopt;
    }

    // "uint32", "array of string", ...
    [[nodiscard]] std::string type_text() const {
        if (type_ != ValueType::array) return std::string(value_type_name(type_));
        return "array of " + std::string(value_type_name(element_type_));
    }

private:
    ValueType type_ = ValueType::uint8;
    Scalar scalar_ = std::uint64_t{0};
    ValueType element_type_ = ValueType::uint8;
    std::vector<Value> elements_;
};

inline constexpr std::uint64_t default_alignment = 32;
inline constexpr std::string_view alignment_key = "general.alignment";

// general.alignment's value when it is valid (a uint32 power of two), else nullopt.
[[nodiscard]] inline std::optional<std::uint64_t> valid_alignment(const Value& value) noexcept {
    const auto a = value.as_unsigned();
    if (value.type() != ValueType::uint32 || !a || *a == 0 || (*a & (*a - 1)) != 0) return std::nullopt;
    return a;
}

// The key-value pairs of a file in file order; keys are unique. Typed getters throw FormatError
// naming the file (source) and the key when a key is missing or has another type.
class Metadata {
public:
    explicit Metadata(std::string source = "gguf") : source_(std::move(source)) {}

    [[nodiscard]] const std::string& source() const noexcept { return source_; }
    [[nodiscard]] std::span<const std::pair<std::string, Value>> entries() const noexcept { return entries_; }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

    // Adds a key, or replaces its value in place (its position stays).
    void set(std::string key, Value value) {
        if (const auto it = index_.find(key); it != index_.end()) {
            entries_[it->second].second = std::move(value);
            return;
        }
        index_.emplace(key, entries_.size());
        entries_.emplace_back(std::move(key), std::move(value));
    }
    // Adds a key that must not be there yet (a reader's duplicate check).
    [[nodiscard]] bool insert(std::string key, Value value) {
        if (index_.contains(key)) return false;
        set(std::move(key), std::move(value));
        return true;
    }
    void erase(const std::string& key) {
        const auto it = index_.find(key);
        if (it == index_.end()) return;
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(it->second));
        index_.clear();
        for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
    }

    [[nodiscard]] const Value* find(const std::string& key) const {
        const auto it = index_.find(key);
        return it == index_.end() ? nullptr : &entries_[it->second].second;
    }
    [[nodiscard]] bool contains(const std::string& key) const { return index_.contains(key); }

    [[nodiscard]] std::string text(const std::string& key) const {
        return *checked(key, optional_text(key), "a string");
    }
    [[nodiscard]] std::optional<std::string> optional_text(const std::string& key) const {
        return typed(key, "a string", [](const Value& v) -> std::optional<std::string> {
            if (const auto* s = v.as_text()) return *s;
            return std::nullopt;
        });
    }
    // Any integer type with a value >= 0.
    [[nodiscard]] std::uint64_t unsigned_integer(const std::string& key) const {
        return *checked(key, optional_unsigned_integer(key), "a non-negative integer");
    }
    [[nodiscard]] std::optional<std::uint64_t> optional_unsigned_integer(const std::string& key) const {
        return typed(key, "a non-negative integer", [](const Value& v) { return v.as_unsigned(); });
    }
    // float32 or float64.
    [[nodiscard]] std::optional<double> optional_real(const std::string& key) const {
        return typed(key, "a float", [](const Value& v) { return v.as_real(); });
    }
    [[nodiscard]] std::optional<bool> optional_bool(const std::string& key) const {
        return typed(key, "a bool", [](const Value& v) { return v.as_bool(); });
    }
    [[nodiscard]] std::vector<std::string> texts(const std::string& key) const {
        return array_of<std::string>(key, "an array of strings", [](const Value& v) -> std::optional<std::string> {
            if (const auto* s = v.as_text()) return *s;
            return std::nullopt;
        });
    }
    [[nodiscard]] std::vector<double> reals(const std::string& key) const {
        return array_of<double>(key, "an array of floats", [](const Value& v) { return v.as_real(); });
    }
    [[nodiscard]] std::vector<std::int64_t> integers(const std::string& key) const {
        return array_of<std::int64_t>(key, "an array of integers", [](const Value& v) { return v.as_signed(); });
    }

private:
    template <class T>
    const std::optional<T>& checked(const std::string& key, const std::optional<T>& value, const char* expected) const {
        if (!value) throw FormatError(source_, key, expected, "no such key");
        return value;
    }
    template <class Get>
    auto typed(const std::string& key, const char* expected, Get get) const -> decltype(get(std::declval<Value>())) {
        const Value* v = find(key);
        if (v == nullptr) return std::nullopt;
        auto result = get(*v);
        if (!result) throw FormatError(source_, key, expected, "a value of type " + v->type_text());
        return result;
    }
    template <class T, class Get>
    std::vector<T> array_of(const std::string& key, const char* expected, Get get) const {
        const Value* v = find(key);
        if (v == nullptr) throw FormatError(source_, key, expected, "no such key");
        if (v->type() != ValueType::array) {
            throw FormatError(source_, key, expected, "a value of type " + v->type_text());
        }
        std::vector<T> out;
        out.reserve(v->elements().size());
        for (std::size_t i = 0; i < v->elements().size(); ++i) {
            auto element = get(v->elements()[i]);
            if (!element) {
                throw FormatError(source_, key + "[" + std::to_string(i) + "]", expected,
                                  "an element of type " + v->elements()[i].type_text());
            }
            out.push_back(std::move(*element));
        }
        return out;
    }

    std::string source_;
    std::vector<std::pair<std::string, Value>> entries_;
    std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace multibool::gguf
