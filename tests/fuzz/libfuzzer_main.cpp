// libFuzzer's entry points for multibool-fuzz: MULTIBOOL_FUZZ_TARGET names the target to run
// (scripts/fuzz.sh sets it; fuzz_target.hpp has the harness contract).
#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_target.hpp"

namespace {
const multibool::fuzz::Target* selected = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* name = std::getenv("MULTIBOOL_FUZZ_TARGET");
    selected = name != nullptr ? multibool::fuzz::find_target(name) : nullptr;
    if (selected == nullptr) {
        std::fprintf(stderr, "multibool-fuzz: set MULTIBOOL_FUZZ_TARGET to one of:");
        for (const auto& t : multibool::fuzz::targets())
            std::fprintf(stderr, " %.*s", int(t.name.size()), t.name.data());
        std::fprintf(stderr, "\n");
        std::exit(2);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static_cast<void>(selected->run({data, size}));
    return 0;
}
