#pragma once
// Little-endian binary records with a running FNV-1a checksum, and the FormatError that names
// the file, the field and the expected vs found value. Shared by every multibool file format.
#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
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
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace multibool {

static_assert(std::endian::native == std::endian::little,
              "multibool's file formats are little-endian; big-endian hosts are not supported");

// What may be written or read as raw bytes.
template <class T>
concept TriviallyCopyable = std::is_trivially_copyable_v<T>;

// Text from a file as an error message may quote it: at most max_bytes of it (then the count of
// the rest), with control bytes and bytes that are not UTF-8 written as \xNN, so that a hostile
// file can neither flood a terminal nor send it escape sequences.
inline std::string printable_text(std::string_view text, std::size_t max_bytes = 160) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    std::size_t at = 0;
    while (at < text.size() && at < max_bytes) {
        const auto byte = static_cast<unsigned char>(text[at]);
        // A UTF-8 sequence's length from its lead byte (0: not a lead byte), then its continuation bytes.
        const std::size_t length = byte < 0x80           ? 1
                                   : (byte >> 5) == 0x6  ? 2
                                   : (byte >> 4) == 0xE  ? 3
                                   : (byte >> 3) == 0x1E ? 4
                                                         : 0;
        bool whole = length != 0 && at + length <= text.size();
        for (std::size_t k = 1; whole && k < length; ++k)
            whole = (static_cast<unsigned char>(text[at + k]) & 0xC0) == 0x80;
        if (whole && (byte >= 0x20 && byte != 0x7F)) {
            out.append(text.substr(at, length));
            at += length;
        } else {
            out += "\\x";
            out += digits[byte >> 4];
            out += digits[byte & 0xF];
            ++at;
        }
    }
    if (at < text.size()) out += "... (" + std::to_string(text.size() - at) + " more bytes)";
    return out;
}

class FormatError : public std::runtime_error {
public:
    // field, expected and found may quote the file: they appear as printable_text.
    FormatError(std::string source, std::string field, std::string expected, std::string found)
        : std::runtime_error(source + ": field '" + printable_text(field) + "': expected " + printable_text(expected) +
                             ", found " + printable_text(found)),
          source_(std::move(source)),
          field_(printable_text(field)) {}
    [[nodiscard]] const std::string& source() const noexcept { return source_; }
    [[nodiscard]] const std::string& field() const noexcept { return field_; }

private:
    std::string source_;
    std::string field_;
};

// Fuzzing builds (the macro is libFuzzer's convention) read checksums without comparing them, so
// that mutated bytes reach the fields behind them; every other build compares them.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
inline constexpr bool verifies_checksums = false;
#else
inline constexpr bool verifies_checksums = true;
#endif

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
        if (stored != computed && verifies_checksums) {
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

namespace detail {

// Flushes a file's, or a folder's, data to the device (fsync).
inline void sync_to_device(const std::filesystem::path& path, bool folder) {
    const int fd = ::open(path.c_str(), folder ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) {
        throw std::runtime_error(path.string() +
                                 ": cannot open to sync: " + std::error_code(errno, std::generic_category()).message());
    }
    const int result = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    // Some file systems cannot sync a folder (EINVAL); their renames are as durable as they get.
    if (result != 0 && !(folder && error == EINVAL)) {
        throw std::runtime_error(path.string() +
                                 ": cannot sync to disk: " + std::error_code(error, std::generic_category()).message());
    }
}

}  // namespace detail

// Writes through a temporary file in the same folder and renames it over path, so a failed or
// interrupted write never leaves a half-written file where a good one was. The temporary name is
// unique so that two writers of one path cannot interleave their bytes. The new file's bytes are
// synced before the rename and the folder after it: otherwise a power loss can leave the name
// pointing at an empty file, or the rename undone, once the old file is gone.
template <class WriteFn>
void write_file_atomically(const std::filesystem::path& path, WriteFn&& write_fn) {
    std::filesystem::path tmp = path;
    tmp += ".tmp." + std::to_string(std::random_device{}());
    try {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw std::runtime_error(tmp.string() + ": cannot open for writing");
        write_fn(out);
        out.close();
        if (!out) throw std::runtime_error(tmp.string() + ": write failed");
        detail::sync_to_device(tmp, false);
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
    const std::filesystem::path folder = path.parent_path();
    detail::sync_to_device(folder.empty() ? std::filesystem::path(".") : folder, true);
}

inline std::ifstream open_for_reading(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    return in;
}

}  // namespace multibool
