#pragma once
// Fine-tuning progress on stderr: [####....] step/steps loss (kl, mse) flips tok/s ETA, one line
// rewritten in place on a terminal, else about twenty lines per run (for logs).
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <iostream>
#include <string>

#include <unistd.h>

#include "llama/finetune.hpp"

namespace multibool::llama::cli {

inline bool stderr_is_terminal() { return isatty(fileno(stderr)) != 0; }

// m:ss; "--:--" for NaN or beyond a year (a huge --steps), whose conversion to long is undefined.
inline std::string clock_text(double seconds) {
    constexpr double year = 365.0 * 24 * 3600;
    if (!(seconds <= year)) return "--:--";
    const auto s = static_cast<long>(std::max(0.0, seconds));
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%ld:%02ld", s / 60, s % 60);
    return buffer;
}

inline void show_progress(std::size_t done, std::size_t total, const FineTuneStep& s, double tokens_per_second,
                          double seconds_left) {
    constexpr std::size_t logged_lines = 20;
    constexpr std::size_t bar_width = 24;
    const bool terminal = stderr_is_terminal();
    if (!terminal && done != total && done * logged_lines / total == (done - 1) * logged_lines / total) return;
    const std::size_t filled = bar_width * done / total;
    char line[256];
    std::snprintf(line, sizeof line, "[%s%s] %zu/%zu loss %.4f (kl %.4f mse %.4f) flips %.2e %.0f tok/s ETA %s",
                  std::string(filled, '#').c_str(), std::string(bar_width - filled, '.').c_str(), done, total,
                  s.loss.total, s.loss.kl, s.loss.hidden_mse, s.flips.flip_rate(), tokens_per_second,
                  clock_text(seconds_left).c_str());
    std::cerr << (terminal ? "\r" : "") << line << (terminal && done != total ? "" : "\n") << std::flush;
}

}  // namespace multibool::llama::cli
