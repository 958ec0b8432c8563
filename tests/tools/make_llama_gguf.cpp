// make-llama-gguf OUT VOCABULARY_GGUF SEED: writes the test fixture of llama_gguf_fixture.hpp, a
// small llama-architecture GGUF model whose projections can be Q1_0, for the command-line tests.
#include <cstdint>
#include <exception>
#include <iostream>
#include <string>

#include "llama_gguf_fixture.hpp"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: make-llama-gguf OUT VOCABULARY_GGUF SEED\n";
        return 2;
    }
    try {
        multibool::testing::write_llama_gguf(argv[1], argv[2], std::stoull(argv[3]));
    } catch (const std::exception& e) {
        std::cerr << "make-llama-gguf: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
