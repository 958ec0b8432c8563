// multibool-llama's command lines (llama/cli/command_lines.hpp): what each command's check accepts
// and refuses before any file is read. The command-line tests (tests/cli) run the tool itself; these
// reach arguments its harness cannot pass, such as an empty one.
#include <catch2/catch.hpp>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "llama/cli/command_lines.hpp"

namespace cli = multibool::llama::cli;
using Catch::Matchers::Contains;

namespace {

// argv after the command's name.
struct Arguments {
    explicit Arguments(std::vector<std::string> args) : text(std::move(args)) {
        for (auto& a : text) pointers.push_back(a.data());
    }
    std::vector<std::string> text;
    std::vector<char*> pointers;
};

cli::FineTuneCommandLine fine_tune_line(std::vector<std::string> args) {
    const cli::Command command = cli::finetune_command_line();
    Arguments a(std::move(args));
    const cli::ParsedOptions options(command, a.pointers);
    command.check(options);
    return cli::fine_tune_command_line(options);
}

void check(const cli::Command& command, std::vector<std::string> args) {
    Arguments a(std::move(args));
    command.check(cli::ParsedOptions(command, a.pointers));
}

// The message of the UsageError f throws; any other exception escapes and fails the test.
template <class F>
std::string usage_error(F&& f) {
    try {
        f();
    } catch (const cli::UsageError& e) {
        return e.what();
    }
    return "(accepted)";
}

}  // namespace

TEST_CASE("Hidden-state blocks (--hidden-blocks) are all or a list of block numbers, with no empty piece",
          "[command_lines]") {
    CHECK(fine_tune_line({"--out", "run.ckpt"}).hidden_blocks.empty());
    CHECK(fine_tune_line({"--out", "run.ckpt", "--hidden-blocks", "all"}).hidden_blocks.empty());
    CHECK(fine_tune_line({"--out", "run.ckpt", "--hidden-blocks", "4,0,2"}).hidden_blocks ==
          std::vector<std::size_t>{4, 0, 2});
    // An empty value used to read as "all"; "0," as block 0 alone.
    for (const char* refused : {"", "0,", ",0", "1,,2", "-1", "1 ", "18446744073709551616"}) {
        INFO("--hidden-blocks '" << refused << "'");
        CHECK_THAT(usage_error([&] {
                       static_cast<void>(fine_tune_line({"--out", "run.ckpt", "--hidden-blocks", refused}));
                   }),
                   Contains("--hidden-blocks takes all or block numbers separated by commas"));
    }
    CHECK(cli::hidden_block_mask({2, 0}, 3) == std::vector<bool>{true, false, true});
    CHECK(cli::hidden_block_mask({}, 3).empty());
    CHECK_THAT(usage_error([&] { static_cast<void>(cli::hidden_block_mask({3}, 3)); }),
               Contains("names block 3; the model has blocks 0..2"));
}

TEST_CASE("Each command's check accepts its defaults and refuses bad values before reading a file", "[command_lines]") {
    const std::string missing = "no-such-directory/no-such-model.bin";
    // Defaults are accepted as they are, with only what a command needs given.
    check(cli::perplexity_command_line(), {"--model", missing});
    check(cli::generate_command_line(), {"--model", missing});
    check(cli::quantize_command_line(), {"--model", missing, "--kernels", "3"});
    check(cli::tokenize_command_line(), {"--tokenizer", missing, "--text", ""});
    const cli::FineTuneCommandLine line = fine_tune_line({"--model", missing, "--out", "run.ckpt"});
    CHECK(line.kernels == 2);
    CHECK(line.group == cli::default_group);
    CHECK(!line.resume);

    // A usage error, although the model does not exist: the check reads no file.
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(check(cli::perplexity_command_line(), {"--model", missing, "--kernels", "9"}));
               }),
               Contains("K=9"));
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(
                       check(cli::perplexity_command_line(), {"--model", missing, "--calibration-tokens", "1e3"}));
               }),
               Contains("--calibration-tokens takes a whole number"));
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(check(cli::generate_command_line(), {"--model", missing, "--steps", "0"}));
               }),
               Contains("--steps takes 1.."));
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(check(cli::tokenize_command_line(), {"--tokenizer", missing}));
               }),
               Contains("give one of --text and --text-file"));
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(fine_tune_line({"--model", missing, "--out", "run.ckpt", "--save-every", "x"}));
               }),
               Contains("--save-every takes a whole number"));
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(fine_tune_line({"--resume", "run.ckpt", "--batch", "4"}));
               }),
               Contains("--batch is fixed by the checkpoint being resumed"));
    CHECK_THAT(usage_error([&] {
                   static_cast<void>(fine_tune_line({"--out", "run.ckpt", "--kernels", "5"}));
               }),
               Contains("K=5"));
}
