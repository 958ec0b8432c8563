#pragma once
// Ctrl-C and SIGTERM during fine-tuning: while a StopSignal lives, they only set a flag, which the
// loop reads after each step to save and stop; the previous handlers come back when it ends.
#include <csignal>

namespace multibool::llama::cli {

// The status a shell reports for a program ended by SIGINT (128 + the signal's number).
inline constexpr int exit_after_stop_signal = 128 + SIGINT;

namespace detail {
inline volatile std::sig_atomic_t stop_requested = 0;
extern "C" inline void request_stop(int) { stop_requested = 1; }
}  // namespace detail

class StopSignal {
public:
    StopSignal() {
        detail::stop_requested = 0;
        previous_interrupt_ = std::signal(SIGINT, detail::request_stop);
        previous_terminate_ = std::signal(SIGTERM, detail::request_stop);
    }
    ~StopSignal() {
        std::signal(SIGINT, previous_interrupt_);
        std::signal(SIGTERM, previous_terminate_);
    }
    StopSignal(const StopSignal&) = delete;
    StopSignal& operator=(const StopSignal&) = delete;

    [[nodiscard]] bool requested() const noexcept { return detail::stop_requested != 0; }

private:
    using Handler = void (*)(int);
    Handler previous_interrupt_ = nullptr;
    Handler previous_terminate_ = nullptr;
};

}  // namespace multibool::llama::cli
