#pragma once
// The option table of multibool-llama's commands and the parser that checks a command line
// against it. Each option's default is stored once, as the text a user would type: the parser
// reads it exactly like a given value, and --help prints it in place of "{}" in the help text.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/assets_path.hpp"

namespace multibool::llama::cli {

// A command-line mistake: reported with the command's usage hint and exit_usage_error.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr int exit_success = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage_error = 2;

// Run-time flags of an option, read by the commands instead of lists of names kept beside the table.
enum OptionFlag : unsigned {
    no_flags = 0,
    defines_run = 1U << 0,       // stored in a fine-tuning checkpoint: giving it with --resume is an error
    names_input_file = 1U << 1,  // repeated in the resume command printed when a run is stopped
};

struct OptionSpec {
    OptionSpec(std::string name, std::string value_name, std::string help,
               std::optional<std::string> default_value = std::nullopt, unsigned flags = no_flags)
        : name(std::move(name)),
          value_name(std::move(value_name)),
          help(std::move(help)),
          default_value(std::move(default_value)),
          flags(flags) {}

    std::string name;        // without the leading dashes
    std::string value_name;  // empty: a flag, given without a value
    std::string help;        // "{}" stands for the default
    std::optional<std::string> default_value;
    unsigned flags = no_flags;

    [[nodiscard]] bool has(OptionFlag flag) const noexcept { return (flags & flag) != 0; }
    [[nodiscard]] std::string help_text() const {
        const std::size_t at = help.find("{}");
        if (at == std::string::npos || !default_value) return help;
        return help.substr(0, at) + *default_value + help.substr(at + 2);
    }
};

class ParsedOptions;

struct Command {
    std::string name;
    std::string brief;  // one line for the tool's usage
    std::string summary;
    std::vector<OptionSpec> options;
    // Throws UsageError for any option value that is wrong whatever the files hold; reads no file.
    void (*check)(const ParsedOptions&) = nullptr;
    int (*run)(const ParsedOptions&) = nullptr;
};

// A command line (command_lines.hpp) with the handler that runs it.
inline Command with_run(Command command, int (*run)(const ParsedOptions&)) {
    command.run = run;
    return command;
}

inline std::filesystem::path asset(const char* file) { return examples::assets_dir() / file; }

// A default number as it would be typed: 3e-3 rather than 0.003, 10 rather than 1e+01.
inline std::string number_text(double value) {
    constexpr double smallest_fixed = 1e-2;
    char buffer[32];
    if (value != 0 && std::abs(value) < smallest_fixed) {
        const auto end = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific).ptr;
        std::string text(buffer, end);
        // to_chars writes at least two exponent digits ("3e-03").
        const std::size_t exponent = text.find("e-") + 2;
        text.erase(exponent, text.find_first_not_of('0', exponent) - exponent);
        return text;
    }
    return {buffer, std::to_chars(buffer, buffer + sizeof buffer, value).ptr};
}
inline std::string number_text(float value) {
    // Through float's shortest form, so that 3e-3f reads "3e-3" and parses back to itself.
    char buffer[32];
    double shortest = 0;
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
    std::from_chars(buffer, end, shortest);
    return number_text(shortest);
}
inline std::string number_text(std::size_t value) { return std::to_string(value); }

// "32, 64 or 128"
inline std::string alternatives_text(std::span<const std::size_t> values) {
    std::string text;
    for (std::size_t i = 0; i < values.size(); ++i) {
        text += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + std::to_string(values[i]);
    }
    return text;
}

inline constexpr std::size_t help_column = 26;     // where an option's help starts
inline constexpr std::size_t command_column = 12;  // width of a command's name in the tool's usage

inline std::string option_line(const std::string& flag, const std::string& help) {
    return flag + std::string(flag.size() < help_column ? help_column - flag.size() : 1, ' ') + help + "\n";
}

inline std::string usage(const Command& c) {
    std::ostringstream s;
    s << "usage: multibool-llama " << c.name << " [options]\n\n" << c.summary << "\n\noptions:\n";
    for (const auto& o : c.options) {
        s << option_line("  --" + o.name + (o.value_name.empty() ? "" : " " + o.value_name), o.help_text());
    }
    s << option_line("  --help", "this text");
    return s.str();
}

inline std::string tool_usage(std::span<const Command> commands) {
    std::string s =
        "usage: multibool-llama <command> [options]\n\n"
        "Runs LLaMA models (llama2.c checkpoints, GGUF files) with float weights or K Boolean kernels per\n"
        "weight (multibool).\n\ncommands:\n";
    for (const auto& c : commands)
        s += "  " + c.name + std::string(command_column - c.name.size(), ' ') + c.brief + "\n";
    s += "\nRun 'multibool-llama <command> --help' for its options. Default files come from $MULTIBOOL_ASSETS\n"
         "(now " +
         examples::assets_dir().string() + ").\n";
    return s;
}

// The --name value pairs of one command line, checked against its command's table. Lookups give
// the value on the command line, else the option's default.
class ParsedOptions {
public:
    ParsedOptions(const Command& command, std::span<char*> args) : command_(command) {
        for (std::size_t i = 0; i < args.size(); ++i) {
            const std::string_view arg = args[i];
            if (arg == "--help" || arg == "-h") {
                help_ = true;
                continue;
            }
            if (!arg.starts_with("--")) throw UsageError("unexpected argument '" + std::string(arg) + "'");
            const std::string name(arg.substr(2));
            const OptionSpec* spec = find(name);
            if (spec == nullptr) throw UsageError("unknown option --" + name + " for '" + command.name + "'");
            if (spec->value_name.empty()) {
                if (!values_.emplace(name, "").second) throw UsageError("option --" + name + " given twice");
                continue;
            }
            // A value that is itself an option means the real value was left out.
            if (i + 1 >= args.size() || std::string_view(args[i + 1]).starts_with("--")) {
                throw UsageError("option --" + name + " needs a value");
            }
            if (!values_.emplace(name, args[++i]).second) throw UsageError("option --" + name + " given twice");
        }
    }
    [[nodiscard]] const Command& command() const noexcept { return command_; }
    [[nodiscard]] bool help() const noexcept { return help_; }
    [[nodiscard]] bool given(const std::string& name) const { return values_.contains(name); }
    // A flag (an option without a value) is on when given.
    [[nodiscard]] bool flag(const std::string& name) const {
        (void)spec(name);
        return given(name);
    }
    // The first option given that has the flag, in table order.
    [[nodiscard]] const OptionSpec* first_given_with(OptionFlag flag) const {
        for (const auto& o : command_.options) {
            if (o.has(flag) && given(o.name)) return &o;
        }
        return nullptr;
    }
    [[nodiscard]] std::optional<std::string> text(const std::string& name) const {
        const auto it = values_.find(name);
        if (it != values_.end()) return it->second;
        return spec(name).default_value;
    }
    [[nodiscard]] std::filesystem::path path(const std::string& name) const { return required(name); }
    // Digits only: std::stoull would accept " -1" (as 2^64 - 1) and "+7".
    [[nodiscard]] std::optional<std::size_t> count(const std::string& name) const {
        return parse<std::size_t>(
            name, [](const std::size_t&) { return true; }, "a whole number >= 0");
    }
    [[nodiscard]] std::optional<float> real(const std::string& name) const {
        return parse<float>(
            name, [](float v) { return std::isfinite(v); }, "a finite number");
    }

private:
    [[nodiscard]] const OptionSpec* find(const std::string& name) const {
        for (const auto& o : command_.options) {
            if (o.name == name) return &o;
        }
        return nullptr;
    }
    [[nodiscard]] const OptionSpec& spec(const std::string& name) const {
        const OptionSpec* o = find(name);
        if (o == nullptr) throw std::logic_error("multibool-llama: '" + command_.name + "' has no option --" + name);
        return *o;
    }
    [[nodiscard]] std::string required(const std::string& name) const {
        const auto value = text(name);
        if (!value) throw std::logic_error("multibool-llama: --" + name + " has no default");
        return *value;
    }
    template <class T, class Valid>
    [[nodiscard]] std::optional<T> parse(const std::string& name, Valid valid, const char* expected) const {
        const auto value = text(name);
        if (!value) return std::nullopt;
        T parsed{};
        const auto [end, error] = std::from_chars(value->data(), value->data() + value->size(), parsed);
        if (value->empty() || error != std::errc() || end != value->data() + value->size() || !valid(parsed)) {
            throw UsageError("--" + name + " takes " + expected + ", found '" + *value + "'");
        }
        return parsed;
    }

    const Command& command_;
    std::map<std::string, std::string> values_;
    bool help_ = false;
};

// --threads: 1..max_threads, by default every hardware thread up to max_threads (a larger host
// must not make the default an error). Each worker holds its own buffers (a KV cache, a batch's
// share); far more workers than cores only costs memory.
inline constexpr std::size_t max_threads = 256;

inline std::size_t thread_count(const ParsedOptions& options,
                                unsigned hardware_threads = std::thread::hardware_concurrency()) {
    const std::size_t threads =
        options.count("threads").value_or(std::clamp<std::size_t>(hardware_threads, 1, max_threads));
    if (threads == 0 || threads > max_threads) {
        throw UsageError("--threads takes 1.." + std::to_string(max_threads) + ", found " + std::to_string(threads));
    }
    return threads;
}

}  // namespace multibool::llama::cli
