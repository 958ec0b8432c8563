#pragma once
// Reader of GGUF files, llama.cpp's model format (versions 2 and 3, little-endian; ggml's
// docs/gguf.md): header, metadata, tensor infos, then the aligned data section. The file is
// mapped, not read: a tensor's bytes are touched only when asked for, so a 13 GB model costs
// no more memory than the tensors used. Every count, size and offset is checked against the
// file's length before it is used; a malformed file gets a FormatError naming the key or the
// tensor at fault, never a crash or a huge allocation: besides the file's length, the metadata
// values a file may hold are capped (max_metadata_values), since each is a Value in memory.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multibool/core/binary_io.hpp"
#include "multibool/core/gguf_metadata.hpp"
#include "multibool/core/gguf_tensor_types.hpp"

namespace multibool::gguf {

inline constexpr std::uint32_t magic = 0x46554747;  // "GGUF" read as a little-endian uint32
// ggml's limits: 4 dimensions, names shorter than 64 bytes (GGML_MAX_DIMS, GGML_MAX_NAME).
inline constexpr std::uint32_t max_dimensions = 4;
inline constexpr std::size_t max_name_bytes = 63;
// Arrays nest (an array of arrays); deeper than this is refused rather than recursed into.
inline constexpr int max_array_depth = 4;
// Metadata values (array elements included) a file may hold: 2^24, some 40 times a large model's
// vocabulary, scores, token types and merges together, and at most about 2 GB as Values.
inline constexpr std::uint64_t max_metadata_values = std::uint64_t{1} << 24;

// "[64, 512]": ggml dimensions as errors show them.
inline std::string shape_text(std::span<const std::uint64_t> dims) {
    std::string s = "[";
    for (std::size_t d = 0; d < dims.size(); ++d) s += (d ? ", " : "") + std::to_string(dims[d]);
    return s + "]";
}

struct TensorInfo {
    std::string name;
    std::vector<std::uint64_t> dims;  // ggml's ne: dims[0] is the fastest-varying (a matrix's input) dimension
    TensorType type{};
    std::uint64_t offset = 0;  // from the start of the data section
    std::uint64_t elements = 0;
    std::uint64_t bytes = 0;

    // A matrix view of the tensor: dims[0] columns (inputs), the product of the others rows.
    [[nodiscard]] std::uint64_t columns() const noexcept { return dims.empty() ? 1 : dims[0]; }
    [[nodiscard]] std::uint64_t rows() const noexcept { return columns() == 0 ? 0 : elements / columns(); }
    [[nodiscard]] std::string shape_text() const { return gguf::shape_text(dims); }
};

namespace detail {

// A read-only private mapping of a whole file, unmapped on destruction.
class MappedFile {
public:
    explicit MappedFile(const std::filesystem::path& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            throw std::runtime_error(path.string() + ": cannot open for reading: " +
                                     std::error_code(errno, std::generic_category()).message());
        }
        struct stat status {};
        if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
            ::close(fd);
            throw std::runtime_error(path.string() + ": not a regular file");
        }
        size_ = static_cast<std::size_t>(status.st_size);
        if (size_ > 0) {
            void* base = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (base == MAP_FAILED) {
                ::close(fd);
                throw std::runtime_error(path.string() +
                                         ": cannot map: " + std::error_code(errno, std::generic_category()).message());
            }
            base_ = static_cast<const std::byte*>(base);
        }
        ::close(fd);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() {
        if (base_ != nullptr) ::munmap(const_cast<std::byte*>(base_), size_);
    }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {base_, size_}; }

private:
    const std::byte* base_ = nullptr;
    std::size_t size_ = 0;
};

// Sequential little-endian reads from a byte range; every read checks what is left first.
class Cursor {
public:
    Cursor(std::span<const std::byte> bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {}

    [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
    [[nodiscard]] std::uint64_t remaining() const noexcept { return bytes_.size() - position_; }
    [[nodiscard]] const std::string& source() const noexcept { return source_; }

    // Counts values about to be read against max_metadata_values.
    void take_values(std::uint64_t count, const std::string& field) {
        if (count > max_metadata_values - values_) {
            throw FormatError(source_, field,
                              "at most " + std::to_string(max_metadata_values) + " metadata values in the file",
                              std::to_string(count) + " more after " + std::to_string(values_));
        }
        values_ += count;
    }

    void require(std::uint64_t count, const std::string& field) const {
        if (count > remaining()) {
            throw FormatError(source_, field, std::to_string(count) + " more bytes",
                              "the file ending after " + std::to_string(remaining()) + " (at byte " +
                                  std::to_string(position_) + " of " + std::to_string(bytes_.size()) + ")");
        }
    }
    template <class T>
    T read(const std::string& field) {
        require(sizeof(T), field);
        T value;
        std::memcpy(&value, bytes_.data() + position_, sizeof(T));
        position_ += sizeof(T);
        return value;
    }
    std::string read_string(const std::string& field) {
        const auto length = read<std::uint64_t>(field + " length");
        require(length, field);
        std::string s(reinterpret_cast<const char*>(bytes_.data() + position_), static_cast<std::size_t>(length));
        position_ += length;
        return s;
    }
    void seek(std::uint64_t position, const std::string& field) {
        if (position > bytes_.size()) {
            throw FormatError(source_, field, "an offset within the file's " + std::to_string(bytes_.size()) + " bytes",
                              std::to_string(position));
        }
        position_ = position;
    }

private:
    std::span<const std::byte> bytes_;
    std::string source_;
    std::uint64_t position_ = 0;
    std::uint64_t values_ = 0;
};

inline Value read_value(Cursor& in, ValueType type, const std::string& field, int depth) {
    if (is_scalar_type(type)) {
        return visit_scalar_type(type, [&]<class T>() -> Value {
            if constexpr (std::is_same_v<T, bool>) {
                const auto b = in.read<std::uint8_t>(field);
                if (b > 1) throw FormatError(in.source(), field, "a bool (0 or 1)", std::to_string(b));
                return {type, b == 1};
            } else {
                return {type, held_type<T>{in.read<T>(field)}};
            }
        });
    }
    switch (type) {
        case ValueType::string:
            return Value::text(in.read_string(field));
        case ValueType::array: {
            const auto element_raw = in.read<std::uint32_t>(field + " element type");
            if (element_raw >= value_type_count) {
                throw FormatError(in.source(), field + " element type", "a GGUF value type (0..12)",
                                  std::to_string(element_raw));
            }
            const auto element_type = static_cast<ValueType>(element_raw);
            if (element_type == ValueType::array && depth + 1 >= max_array_depth) {
                throw FormatError(in.source(), field,
                                  "arrays nested at most " + std::to_string(max_array_depth) + " deep",
                                  "deeper nesting");
            }
            const auto count = in.read<std::uint64_t>(field + " count");
            // Every element takes at least this many bytes, which bounds the allocation by the file.
            const std::uint64_t min_element_bytes = element_type == ValueType::string  ? 8
                                                    : element_type == ValueType::array ? 12
                                                                                       : scalar_bytes(element_type);
            if (count > in.remaining() / min_element_bytes) {
                throw FormatError(in.source(), field + " count",
                                  "at most " + std::to_string(in.remaining() / min_element_bytes) +
                                      " elements (what the rest of the file can hold)",
                                  std::to_string(count));
            }
            in.take_values(count, field + " count");
            std::vector<Value> elements;
            elements.reserve(static_cast<std::size_t>(count));
            for (std::uint64_t i = 0; i < count; ++i) {
                elements.push_back(read_value(in, element_type, field, depth + 1));
            }
            return Value::array(element_type, std::move(elements));
        }
        default:
            break;
    }
    throw FormatError(in.source(), field, "a GGUF value type (0..12)",
                      std::to_string(static_cast<std::uint32_t>(type)));
}

[[nodiscard]] constexpr std::uint64_t align_up(std::uint64_t offset, std::uint64_t alignment) noexcept {
    return (offset + alignment - 1) / alignment * alignment;
}

}  // namespace detail

// An opened GGUF file. Tensor bytes are views into the mapping: valid while the File lives.
class File {
public:
    explicit File(const std::filesystem::path& path)
        : path_(path), mapping_(std::make_shared<detail::MappedFile>(path)), metadata_(path.string()) {
        parse();
    }

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
    [[nodiscard]] std::uint64_t alignment() const noexcept { return alignment_; }
    // Where the data section starts in the file (a multiple of the alignment); tensor offsets count from here.
    [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }
    [[nodiscard]] const Metadata& metadata() const noexcept { return metadata_; }
    [[nodiscard]] std::span<const TensorInfo> tensors() const noexcept { return tensors_; }

    [[nodiscard]] const TensorInfo* find_tensor(std::string_view name) const {
        const auto it = tensor_index_.find(std::string(name));
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    [[nodiscard]] const TensorInfo& tensor(std::string_view name) const {
        const TensorInfo* info = find_tensor(name);
        if (info == nullptr)
            throw FormatError(path_.string(), "tensor " + std::string(name), "present", "no such tensor");
        return *info;
    }
    // The tensor's bytes as stored (checked against the file when it was opened).
    [[nodiscard]] std::span<const std::byte> data(const TensorInfo& info) const {
        return mapping_->bytes().subspan(static_cast<std::size_t>(data_offset_ + info.offset),
                                         static_cast<std::size_t>(info.bytes));
    }
    // The tensor as floats, whatever its stored type (gguf_tensor_types.hpp's dequantize).
    [[nodiscard]] std::vector<float> to_float(const TensorInfo& info) const {
        if (!can_dequantize(info.type)) {
            throw FormatError(path_.string(), "tensor " + info.name, "a type this reader converts to float",
                              std::string(type_traits(static_cast<std::uint32_t>(info.type))->name));
        }
        std::vector<float> values(static_cast<std::size_t>(info.elements));
        dequantize(info.type, data(info), values);
        return values;
    }

private:
    void parse() {
        const std::string source = path_.string();
        detail::Cursor in(mapping_->bytes(), source);
        const auto found_magic = in.read<std::uint32_t>("magic");
        if (found_magic != magic) {
            char text[5] = {};
            std::memcpy(text, &found_magic, 4);
            for (char& c : text) c = (c >= 32 && c < 127) ? c : '?';
            throw FormatError(source, "magic", "\"GGUF\"", "\"" + std::string(text, 4) + "\"");
        }
        version_ = in.read<std::uint32_t>("version");
        if (version_ != 2 && version_ != 3) {
            const bool swapped = version_ == 0x02000000 || version_ == 0x03000000;
            throw FormatError(source, "version", "2 or 3",
                              std::to_string(version_) + (swapped ? " (a big-endian file, not supported)" : ""));
        }
        const auto tensor_count = in.read<std::uint64_t>("tensor count");
        const auto key_count = in.read<std::uint64_t>("metadata count");
        // A key is at least 12 bytes (length, type), a tensor info at least 24: bound both by the file.
        if (key_count > in.remaining() / 12) {
            throw FormatError(source, "metadata count", "at most " + std::to_string(in.remaining() / 12),
                              std::to_string(key_count));
        }
        if (tensor_count > in.remaining() / 24) {
            throw FormatError(source, "tensor count", "at most " + std::to_string(in.remaining() / 24),
                              std::to_string(tensor_count));
        }

        for (std::uint64_t k = 0; k < key_count; ++k) {
            std::string key = in.read_string("metadata key " + std::to_string(k));
            const auto type = in.read<std::uint32_t>(key + " type");
            if (type >= value_type_count) {
                throw FormatError(source, key + " type", "a GGUF value type (0..12)", std::to_string(type));
            }
            Value value = detail::read_value(in, static_cast<ValueType>(type), key, 0);
            if (!metadata_.insert(key, std::move(value))) throw FormatError(source, key, "a unique key", "a duplicate");
        }
        if (const Value* a = metadata_.find(std::string(alignment_key))) {
            const auto value = valid_alignment(*a);
            if (!value) {
                throw FormatError(
                    source, std::string(alignment_key), "a uint32 power of two",
                    a->type() == ValueType::uint32 ? std::to_string(*a->as_unsigned()) : "a " + a->type_text());
            }
            alignment_ = *value;
        }

        tensors_.reserve(static_cast<std::size_t>(tensor_count));
        for (std::uint64_t t = 0; t < tensor_count; ++t) tensors_.push_back(read_tensor_info(in, t));

        data_offset_ = detail::align_up(in.position(), alignment_);
        const std::uint64_t file_bytes = mapping_->bytes().size();
        const std::uint64_t data_bytes = file_bytes >= data_offset_ ? file_bytes - data_offset_ : 0;
        for (std::size_t t = 0; t < tensors_.size(); ++t) {
            const TensorInfo& info = tensors_[t];
            const std::string field = "tensor " + info.name;
            if (info.offset % alignment_ != 0) {
                throw FormatError(source, field + " offset",
                                  "a multiple of the alignment " + std::to_string(alignment_),
                                  std::to_string(info.offset));
            }
            if (info.offset > data_bytes || info.bytes > data_bytes - info.offset) {
                throw FormatError(source, field,
                                  std::to_string(info.bytes) + " bytes at offset " + std::to_string(info.offset) +
                                      " of the data section",
                                  "a data section of " + std::to_string(data_bytes) + " bytes");
            }
            if (!tensor_index_.emplace(info.name, t).second) {
                throw FormatError(source, field, "a unique tensor name", "a duplicate");
            }
        }
    }

    TensorInfo read_tensor_info(detail::Cursor& in, std::uint64_t index) {
        const std::string source = path_.string();
        TensorInfo info;
        info.name = in.read_string("tensor " + std::to_string(index) + " name");
        const std::string field = "tensor " + info.name;
        if (info.name.size() > max_name_bytes) {
            throw FormatError(source, "tensor " + std::to_string(index) + " name",
                              "at most " + std::to_string(max_name_bytes) + " bytes",
                              std::to_string(info.name.size()) + " bytes");
        }
        const auto dimensions = in.read<std::uint32_t>(field + " dimension count");
        if (dimensions == 0 || dimensions > max_dimensions) {
            throw FormatError(source, field + " dimension count", "1.." + std::to_string(max_dimensions),
                              std::to_string(dimensions));
        }
        info.elements = 1;
        for (std::uint32_t d = 0; d < dimensions; ++d) {
            const auto extent = in.read<std::uint64_t>(field + " dimension " + std::to_string(d));
            constexpr auto max_elements = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
            if (extent == 0 || extent > max_elements / info.elements) {
                throw FormatError(source, field + " dimension " + std::to_string(d),
                                  "an extent >= 1 keeping the element count below 2^63", std::to_string(extent));
            }
            info.dims.push_back(extent);
            info.elements *= extent;
        }
        const auto type = in.read<std::uint32_t>(field + " type");
        const auto traits = type_traits(type);
        if (!traits) throw FormatError(source, field + " type", "a ggml tensor type", std::to_string(type));
        info.type = static_cast<TensorType>(type);
        if (info.dims[0] % traits->block_size != 0) {
            throw FormatError(
                source, field + " dimension 0",
                "a multiple of " + std::string(traits->name) + "'s block of " + std::to_string(traits->block_size),
                std::to_string(info.dims[0]));
        }
        const std::uint64_t blocks = info.elements / traits->block_size;
        if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->block_bytes) {
            throw FormatError(source, field, "a size below 2^64 bytes", info.shape_text());
        }
        info.bytes = blocks * traits->block_bytes;
        info.offset = in.read<std::uint64_t>(field + " offset");
        return info;
    }

    std::filesystem::path path_;
    std::shared_ptr<const detail::MappedFile> mapping_;
    Metadata metadata_;
    std::uint32_t version_ = 0;
    std::uint64_t alignment_ = default_alignment;
    std::uint64_t data_offset_ = 0;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, std::size_t> tensor_index_;
};

// Whether a file starts with GGUF's magic (cheap: reads 4 bytes).
inline bool is_gguf_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    char start[4] = {};
    return in.read(start, 4) && std::memcmp(start, "GGUF", 4) == 0;
}

}  // namespace multibool::gguf
