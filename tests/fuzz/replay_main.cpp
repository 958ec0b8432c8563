// multibool-fuzz-replay: runs a fuzz target on given files, or on every file of given folders, as
// libFuzzer would run them; CTest replays the committed corpora and regression inputs with it.
// `--write-seeds FOLDER` writes each target's seed inputs to FOLDER/<target>/.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.hpp"

namespace fs = std::filesystem;
using namespace multibool::fuzz;

namespace {

int write_seeds(const fs::path& folder) {
    for (const Target& t : targets()) {
        const fs::path dir = folder / std::string(t.name);
        fs::create_directories(dir);
        for (const Seed& seed : t.seeds()) {
            std::ofstream out(dir / seed.name, std::ios::binary | std::ios::trunc);
            out.write(seed.bytes.data(), static_cast<std::streamsize>(seed.bytes.size()));
            if (!out.flush()) {
                std::fprintf(stderr, "multibool-fuzz-replay: cannot write %s\n", (dir / seed.name).c_str());
                return 1;
            }
        }
    }
    return 0;
}

std::vector<fs::path> inputs(const std::vector<fs::path>& given) {
    std::vector<fs::path> files;
    for (const fs::path& p : given) {
        if (fs::is_directory(p)) {
            std::vector<fs::path> in_folder;
            for (const auto& entry : fs::directory_iterator(p)) {
                // Names starting with a dot (.keep holds an empty folder in git) are not inputs.
                if (entry.is_regular_file() && !entry.path().filename().string().starts_with("."))
                    in_folder.push_back(entry.path());
            }
            std::sort(in_folder.begin(), in_folder.end());
            files.insert(files.end(), in_folder.begin(), in_folder.end());
        } else if (fs::is_regular_file(p)) {
            files.push_back(p);
        } else {
            throw std::runtime_error(p.string() + ": neither a file nor a folder");
        }
    }
    return files;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--write-seeds") return write_seeds(args[1]);
    const Target* target = args.empty() ? nullptr : find_target(args[0]);
    if (target == nullptr) {
        std::fprintf(stderr,
                     "usage: multibool-fuzz-replay TARGET FILE_OR_FOLDER...\n"
                     "       multibool-fuzz-replay --write-seeds FOLDER\ntargets:");
        for (const Target& t : targets()) std::fprintf(stderr, " %.*s", int(t.name.size()), t.name.data());
        std::fprintf(stderr, "\n");
        return 2;
    }
    try {
        const auto files = inputs({args.begin() + 1, args.end()});
        std::size_t accepted = 0;
        for (const fs::path& file : files) {
            std::ifstream in(file, std::ios::binary);
            const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
            std::fprintf(stderr, "%s\n", file.c_str());
            if (target->run({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()})) ++accepted;
        }
        std::printf("%s: %zu inputs replayed (%zu accepted by the reader), none crashed\n", argv[1], files.size(),
                    accepted);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "multibool-fuzz-replay: %s\n", e.what());
        return 1;
    }
}
