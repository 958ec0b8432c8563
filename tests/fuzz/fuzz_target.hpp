#pragma once
// A fuzz target: one reader of untrusted bytes, run on each input by libFuzzer (libfuzzer_main.cpp,
// clang builds) or by the replay driver (replay_main.cpp, any build; CTest replays the committed
// corpora and regression inputs with it). A harness returns normally when the reader accepts the
// input or refuses it with a documented error type; anything else escapes and ends the process,
// and a broken oracle calls fail(), so both count as crashes.
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace multibool::fuzz {

using Bytes = std::span<const std::uint8_t>;

// A named seed input, written by `multibool-fuzz-replay --write-seeds`.
struct Seed {
    std::string name;
    std::string bytes;
};

struct Target {
    std::string_view name;
    bool (*run)(Bytes input);
    std::vector<Seed> (*seeds)();
};

inline std::vector<Target>& targets() {
    static std::vector<Target> all;
    return all;
}

// Each harness file registers its target with one static Registration.
struct Registration {
    Registration(std::string_view name, bool (*run)(Bytes), std::vector<Seed> (*seeds)()) {
        targets().push_back({name, run, seeds});
    }
};

inline const Target* find_target(std::string_view name) {
    for (const Target& t : targets()) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

[[noreturn]] inline void fail(const std::string& what) {
    std::fprintf(stderr, "multibool fuzz oracle failed: %s\n", what.c_str());
    std::abort();
}

inline void require(bool holds, const std::string& what) {
    if (!holds) fail(what);
}

// Runs f, accepting the documented refusals of values a file may legally hold: a product whose
// float result overflows (weights near the float or half range) is std::invalid_argument naming the
// value "not a finite number", a lookup table's column sums that overflow say "overflows float", an
// AdamW step whose new value overflows says "not a finite float", and a training step whose loss
// overflows is std::runtime_error ("the loss is not finite"); never a wrong result or a crash.
template <class F>
void allowing_overflow_refusal(F&& f) {
    const auto names_overflow = [](const std::exception& e) {
        const std::string_view what = e.what();
        for (const std::string_view phrase :
             {"not a finite number", "is not finite", "not a finite float", "overflows float"}) {
            if (what.find(phrase) != std::string_view::npos) return true;
        }
        return false;
    };
    try {
        f();
    } catch (const std::invalid_argument& e) {
        if (!names_overflow(e)) throw;
    } catch (const std::runtime_error& e) {
        if (!names_overflow(e)) throw;
    }
}

inline std::string text_of(Bytes input) { return {reinterpret_cast<const char*>(input.data()), input.size()}; }

// The readers that take a path read the input from this file, one per process (libFuzzer runs
// inputs one after another). It lives in /dev/shm when there is one, so that an input costs no
// disk write.
class ScratchFile {
public:
    ScratchFile() {
        const std::filesystem::path shm = "/dev/shm";
        const auto folder = std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path();
        path_ = folder / ("multibool-fuzz-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    }
    ScratchFile(const ScratchFile&) = delete;
    ScratchFile& operator=(const ScratchFile&) = delete;
    ~ScratchFile() {
        std::error_code ignored;
        std::filesystem::remove(path_, ignored);
    }
    const std::filesystem::path& write(std::string_view bytes) const {
        std::ofstream out(path_, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out.flush()) fail("cannot write the scratch file " + path_.string());
        return path_;
    }
    const std::filesystem::path& write(Bytes input) const { return write(std::string_view(text_of(input))); }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] std::string read() const {
        std::ifstream in(path_, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

private:
    static int& counter() {
        static int n = 0;
        return n;
    }
    std::filesystem::path path_;
};

// Deterministic weights from integer arithmetic only, so that every compiler (g++ writes the seeds,
// clang fuzzes them) makes the same floats, and so the same fingerprints.
inline std::vector<float> fixed_floats(std::size_t n, std::uint64_t seed, float scale) {
    std::mt19937_64 rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = scale * static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 1000.0f;
    return v;
}

}  // namespace multibool::fuzz
