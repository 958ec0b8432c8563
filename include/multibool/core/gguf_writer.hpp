#pragma once
// Writer of GGUF version 3 files laid out as ggml writes them (ggml's docs/gguf.md): metadata in
// the order given, tensor infos with offsets in the order added, each tensor's data padded with
// zeros to the alignment. The file is replaced atomically: a failed write leaves no half file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/gguf_file.hpp"
#include "multibool/core/gguf_metadata.hpp"
#include "multibool/core/gguf_tensor_types.hpp"

namespace multibool::gguf {

class Writer {
public:
    // The alignment comes from the metadata's general.alignment, else GGUF's default of 32.
    // Every value must read back as given (see check_value); std::invalid_argument naming the key otherwise.
    explicit Writer(Metadata metadata) : metadata_(std::move(metadata)) {
        for (const auto& [key, value] : metadata_.entries()) check_value(value, key, 0);
        if (const Value* a = metadata_.find(std::string(alignment_key))) {
            const auto value = valid_alignment(*a);
            if (!value) throw std::invalid_argument("gguf::Writer: general.alignment must be a uint32 power of two");
            alignment_ = *value;
        }
    }

    [[nodiscard]] const Metadata& metadata() const noexcept { return metadata_; }

    // dims as ggml's ne (dims[0] fastest); data must hold exactly the type's bytes for that shape.
    void add_tensor(std::string name, std::vector<std::uint64_t> dims, TensorType type, std::vector<std::byte> data) {
        const auto traits = type_traits(static_cast<std::uint32_t>(type));
        const std::string what = "gguf::Writer: tensor '" + name + "'";
        if (!traits) throw std::invalid_argument(what + ": unknown type");
        if (name.size() > max_name_bytes) {
            throw std::invalid_argument(what + ": names are at most " + std::to_string(max_name_bytes) + " bytes");
        }
        if (!names_.insert(name).second) throw std::invalid_argument(what + " added twice");
        if (dims.empty() || dims.size() > max_dimensions) throw std::invalid_argument(what + ": 1 to 4 dimensions");
        // Below 2^63 elements, as the reader requires; the size is compared by division, since
        // blocks × block_bytes need not fit in 64 bits.
        constexpr auto max_elements = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        std::uint64_t elements = 1;
        for (std::uint64_t d : dims) {
            if (d == 0) throw std::invalid_argument(what + ": a dimension of 0");
            if (d > max_elements / elements) throw std::invalid_argument(what + ": 2^63 elements or more");
            elements *= d;
        }
        const std::uint64_t bytes = data.size();
        if (dims[0] % traits->block_size != 0 || bytes % traits->block_bytes != 0 ||
            bytes / traits->block_bytes != elements / traits->block_size) {
            throw std::invalid_argument(what + ": " + std::to_string(data.size()) + " bytes do not hold a " +
                                        std::string(traits->name) + " tensor of " + std::to_string(elements) +
                                        " elements with dims[0] = " + std::to_string(dims[0]));
        }
        tensors_.push_back({std::move(name), std::move(dims), type, std::move(data)});
    }

    void write(const std::filesystem::path& path) const {
        write_file_atomically(path, [&](std::ostream& out) { write_to(out); });
    }

    void write_to(std::ostream& out) const {
        std::uint64_t written = 0;
        const auto put = [&](const void* bytes, std::size_t count) {
            out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(count));
            written += count;
        };
        const auto put_scalar = [&](auto value) { put(&value, sizeof value); };
        const auto put_string = [&](const std::string& s) {
            put_scalar(std::uint64_t{s.size()});
            put(s.data(), s.size());
        };
        const auto pad = [&] {
            static constexpr char zeros[256] = {};
            while (written % alignment_ != 0)
                put(zeros, std::min<std::uint64_t>(sizeof zeros, alignment_ - written % alignment_));
        };

        put_scalar(magic);
        put_scalar(std::uint32_t{3});
        put_scalar(std::uint64_t{tensors_.size()});
        put_scalar(std::uint64_t{metadata_.size()});
        for (const auto& [key, value] : metadata_.entries()) {
            put_string(key);
            put_scalar(static_cast<std::uint32_t>(value.type()));
            write_value(value, put_scalar, put_string);
        }
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            put_string(t.name);
            put_scalar(static_cast<std::uint32_t>(t.dims.size()));
            for (std::uint64_t d : t.dims) put_scalar(d);
            put_scalar(static_cast<std::uint32_t>(t.type));
            put_scalar(offset);
            offset += detail::align_up(t.data.size(), alignment_);
        }
        pad();
        for (const auto& t : tensors_) {
            put(t.data.data(), t.data.size());
            pad();
        }
    }

private:
    struct Tensor {
        std::string name;
        std::vector<std::uint64_t> dims;
        TensorType type;
        std::vector<std::byte> data;
    };

    // A value reads back as given when its scalar is held as its type's kind (unsigned, signed, double,
    // bool, string) and in the type's range, and an array's elements all have its element type and
    // nest no deeper than the reader accepts. (float32 values are rounded to float.)
    static void check_value(const Value& value, const std::string& key, int depth) {
        const auto fail = [&](const std::string& why) {
            throw std::invalid_argument("gguf::Writer: key '" + key + "': " + why);
        };
        if (value.type() != ValueType::array) {
            if (!scalar_fits(value)) fail("a " + value.type_text() + " held as another kind or out of its range");
            return;
        }
        const ValueType element = value.element_type();
        if (static_cast<std::uint32_t>(element) >= value_type_count) fail("an array of an unknown type");
        if (element == ValueType::array && depth + 1 >= max_array_depth) {
            fail("arrays nested more than " + std::to_string(max_array_depth) + " deep");
        }
        for (const Value& e : value.elements()) {
            if (e.type() != element) fail("an element of type " + e.type_text() + " in an " + value.type_text());
            check_value(e, key, depth + 1);
        }
    }
    static bool scalar_fits(const Value& value) {
        if (value.type() == ValueType::string) return std::holds_alternative<std::string>(value.scalar());
        if (!is_scalar_type(value.type())) return false;  // an unknown type
        return visit_scalar_type(value.type(), [&]<class T>() {
            const auto* held = std::get_if<held_type<T>>(&value.scalar());
            if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
                return held != nullptr && std::in_range<T>(*held);
            } else {
                return held != nullptr;
            }
        });
    }

    template <class PutScalar, class PutString>
    static void write_value(const Value& value, PutScalar& put_scalar, PutString& put_string) {
        if (is_scalar_type(value.type())) {
            return visit_scalar_type(value.type(), [&]<class T>() {
                const held_type<T> held = std::get<held_type<T>>(value.scalar());
                if constexpr (std::is_same_v<T, bool>) {
                    put_scalar(static_cast<std::uint8_t>(held ? 1 : 0));
                } else {
                    put_scalar(static_cast<T>(held));
                }
            });
        }
        switch (value.type()) {
            case ValueType::string:
                return put_string(std::get<std::string>(value.scalar()));
            case ValueType::array:
                put_scalar(static_cast<std::uint32_t>(value.element_type()));
                put_scalar(std::uint64_t{value.elements().size()});
                for (const Value& element : value.elements()) write_value(element, put_scalar, put_string);
                return;
            default:
                return;  // check_value admits no other type
        }
    }

    Metadata metadata_;
    std::uint64_t alignment_ = default_alignment;
    std::vector<Tensor> tensors_;
    std::unordered_set<std::string> names_;
};

}  // namespace multibool::gguf
