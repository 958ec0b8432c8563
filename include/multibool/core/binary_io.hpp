#pragma once
// Little-endian binary records with a running FNV-1a checksum, and the FormatError that names
// the file, the field and the expected vs found value. Shared by every multibool file format.
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <ostream>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace multibool {

static_assert(std::endian::native == std::endian::little,
              "multibool's file formats are little-endian; big-endian hosts are not supported");

// What may be written or read as raw bytes.
template <class T>
concept TriviallyCopyable = std::is_trivially_copyable_v<T>;

class FormatError : public std::runtime_error {
public:
    FormatError(std::string source, std::string field, std::string expected, std::string found)
        : std::runtime_error(source + ": field '" + field + "': expected " + expected + ", found " + found),
          source_(std::move(source)),
          field_(std::move(field)) {}
    [[nodiscard]] const std::string& source() const noexcept { return source_; }
    [[nodiscard]] const std::string& field() const noexcept { return field_; }

private:
    std::string source_;
    std::string field_;
};

// 64-bit FNV-1a: cheap, dependency-free, and catches the truncations and bit flips we test for.
class Fnv1a {
public:
    void update(std::span<const std::byte> bytes) noexcept {
        for (std::byte b : bytes) {
            hash_ ^= std::to_integer<std::uint64_t>(b);
            hash_ *= 0x100000001b3ULL;
        }
    }
    [[nodiscard]] std::uint64_t value() const noexcept { return hash_; }

private:
    std::uint64_t hash_ = 0xcbf29ce484222325ULL;
};

class BinaryWriter {
public:
    explicit BinaryWriter(std::ostream& out) : out_(out) {}

    template <TriviallyCopyable T>
    void write(std::span<const T> values) {
        const auto bytes = std::as_bytes(values);
        hash_.update(bytes);
        out_.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!out_) throw std::runtime_error("multibool: write failed");
    }
    template <TriviallyCopyable T>
    void write(const T& value) {
        write(std::span<const T>(&value, 1));
    }
    // A u64 element count, then the elements: read_counted checks the count against the shape
    // the reader expects before it reads them.
    template <TriviallyCopyable T>
    void write_counted(std::span<const T> values) {
        write(std::uint64_t{values.size()});
        write(values);
    }
    // Appends the checksum of everything written so far.
    void write_checksum() { write(hash_.value()); }

private:
    std::ostream& out_;
    Fnv1a hash_;
};

class BinaryReader {
public:
    BinaryReader(std::istream& in, std::string source) : in_(in), source_(std::move(source)) {}

    template <TriviallyCopyable T>
    void read(std::span<T> values, const std::string& field) {
        read_bytes(std::as_writable_bytes(values), field);
    }
    template <TriviallyCopyable T>
    T read(const std::string& field) {
        T value{};
        read(std::span<T>(&value, 1), field);
        return value;
    }
    // Reads a vector of count elements, growing it chunk by chunk: a corrupt count in a header
    // then fails at the end of the file instead of allocating all it claims up front.
    template <class T>
    std::vector<T> read_vector(std::size_t count, const std::string& field) {
        std::vector<T> values;
        constexpr std::size_t chunk_elements = (std::size_t{1} << 20) / sizeof(T) + 1;
        while (values.size() < count) {
            const std::size_t start = values.size();
            values.resize(std::min(count, start + chunk_elements));
            read(std::span<T>(values).subspan(start), field);
        }
        return values;
    }
    // What write_counted wrote, refusing a stored count other than `count` (field "<field> count").
    template <class T>
    std::vector<T> read_counted(std::size_t count, const std::string& field) {
        expect(field + " count", read<std::uint64_t>(field + " count"), std::uint64_t{count});
        return read_vector<T>(count, field);
    }
    // Passes over bytes the caller does not keep, still checking that they are there (and
    // counting them in the checksum).
    void skip(std::size_t bytes, const std::string& field) {
        std::array<std::byte, 4096> scratch;
        for (std::size_t done = 0; done < bytes; done += scratch.size()) {
            read_bytes(std::span<std::byte>(scratch).first(std::min(scratch.size(), bytes - done)), field);
        }
    }
    // Reads the stored checksum and compares it with the one of everything read before it.
    void verify_checksum() {
        const std::uint64_t computed = hash_.value();
        const auto stored = read<std::uint64_t>("checksum");
        if (stored != computed) {
            throw FormatError(source_, "checksum", hex(computed) + " (computed over the record)", hex(stored));
        }
    }
    // Reads an 8-byte magic and refuses any other, quoting both.
    void expect_magic(const std::array<char, 8>& expected) {
        std::array<char, 8> magic{};
        read(std::span<char>(magic), "magic");
        if (magic != expected) {
            throw FormatError(source_, "magic", "\"" + std::string(expected.begin(), expected.end()) + "\"",
                              "\"" + std::string(magic.begin(), magic.end()) + "\"");
        }
    }
    template <class T>
    void expect(const std::string& field, T found, T expected) const {
        if (found != expected) throw FormatError(source_, field, std::to_string(expected), std::to_string(found));
    }
    [[nodiscard]] const std::string& source() const noexcept { return source_; }
    [[nodiscard]] std::size_t offset() const noexcept { return offset_; }

private:
    void read_bytes(std::span<std::byte> bytes, const std::string& field) {
        in_.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        const auto got = static_cast<std::size_t>(in_.gcount());
        offset_ += got;
        if (got != bytes.size()) {
            throw FormatError(source_, field, std::to_string(bytes.size()) + " bytes",
                              "the file truncated after " + std::to_string(got) + " of them (at byte " +
                                  std::to_string(offset_) + ")");
        }
        hash_.update(bytes);
    }

    static std::string hex(std::uint64_t v) {
        static constexpr char digits[] = "0123456789abcdef";
        std::string s = "0x";
        for (int shift = 60; shift >= 0; shift -= 4) s += digits[(v >> shift) & 0xF];
        return s;
    }

    std::istream& in_;
    std::string source_;
    Fnv1a hash_;
    std::size_t offset_ = 0;
};

// Writes through a temporary file in the same folder and renames it over path, so a failed or
// interrupted write never leaves a half-written file where a good one was. The temporary name is
// unique so that two writers of one path cannot interleave their bytes.
template <class WriteFn>
void write_file_atomically(const std::filesystem::path& path, WriteFn&& write_fn) {
    std::filesystem::path tmp = path;
    tmp += ".tmp." + std::to_string(std::random_device{}());
    try {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw std::runtime_error(tmp.string() + ": cannot open for writing");
        write_fn(out);
        out.flush();
        if (!out) throw std::runtime_error(tmp.string() + ": write failed");
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw std::runtime_error(path.string() + ": cannot replace with the new file: " + ec.message());
    }
}

inline std::ifstream open_for_reading(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    return in;
}

}  // namespace multibool
