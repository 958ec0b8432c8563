#pragma once
// The fine-tuning CSV log: a header, a row per step, the validation perplexity on the rows where
// it was measured. A resumed run keeps the rows up to its checkpoint's step.
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "llama/cli/model_inputs.hpp"
#include "llama/finetune.hpp"
#include "multibool/core/binary_io.hpp"

namespace multibool::llama::cli {

class TrainingLog {
public:
    // Rows written after the resumed checkpoint's step are dropped: that run will write them again.
    TrainingLog(std::filesystem::path path, std::size_t kernels, std::size_t resumed_step)
        : path_(std::move(path)), kernels_(kernels) {
        std::string header = "step,tokens,loss,kl,hidden_mse,cross_entropy";
        for (std::size_t k = 0; k < kernels; ++k) header += ",flip_rate_k" + std::to_string(k);
        header += ",tokens_per_second,valid_perplexity";
        std::string kept = header + "\n";
        if (resumed_step > 0 && std::filesystem::exists(path_)) {
            std::istringstream old(read_text_file(path_));
            std::string line;
            std::getline(old, line);
            if (line != header) throw std::runtime_error(path_.string() + ": a log with other columns; give --log");
            while (std::getline(old, line)) {
                std::size_t step = 0;
                std::from_chars(line.data(), line.data() + line.size(), step);
                if (step <= resumed_step) kept += line + "\n";
            }
        }
        write_file_atomically(path_, [&](std::ostream& out) { out << kept; });
        out_.open(path_, std::ios::app);
        if (!out_) throw std::runtime_error(path_.string() + ": cannot open for appending");
    }

    // The row of the converted start: no step, only its validation perplexity.
    void start_row(double perplexity) { write(0, 0, std::string(csv_step_fields + kernels_, ','), perplexity); }

    void step_row(std::size_t step, std::size_t tokens, const FineTuneStep& s, double tokens_per_second,
                  std::optional<double> perplexity) {
        std::string fields;
        const auto field = [&](double v) { fields.append(",").append(number(v)); };
        for (const double part : {s.loss.total, s.loss.kl, s.loss.hidden_mse, s.loss.cross_entropy}) field(part);
        for (std::size_t k = 0; k < kernels_; ++k) {
            const std::size_t bits = s.flips.kernel_bits[k];
            field(bits == 0 ? 0.0 : double(s.flips.kernel_flips[k]) / double(bits));
        }
        field(tokens_per_second);
        write(step, tokens, fields, perplexity);
    }

private:
    // loss, kl, hidden_mse, cross_entropy and tokens_per_second, beside one flip rate per kernel.
    static constexpr std::size_t csv_step_fields = 5;

    static std::string number(double v) {
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "%.6g", v);
        return buffer;
    }
    void write(std::size_t step, std::size_t tokens, const std::string& step_fields, std::optional<double> perplexity) {
        out_ << std::to_string(step) << "," << std::to_string(tokens) << step_fields << ","
             << (perplexity ? number(*perplexity) : std::string()) << "\n"
             << std::flush;
        if (!out_) throw std::runtime_error(path_.string() + ": write failed");
    }

    std::filesystem::path path_;
    std::size_t kernels_;
    std::ofstream out_;
};

}  // namespace multibool::llama::cli
