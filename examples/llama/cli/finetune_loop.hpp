#pragma once
// The fine-tuning of one (K, G): conversion or resume, then the steps with progress, the CSV log,
// validation, checkpoints and Ctrl-C; included only by the per-K translation units (finetune_run.hpp).
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include "llama/calibration.hpp"
#include "llama/cli/finetune_run.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/cli/progress_bar.hpp"
#include "llama/cli/stop_signal.hpp"
#include "llama/cli/supported_shapes.hpp"
#include "llama/cli/training_log.hpp"
#include "llama/conversion.hpp"
#include "llama/finetune.hpp"
#include "llama/model_file.hpp"
#include "llama/perplexity.hpp"
#include "multibool/backends/default_backend.hpp"

namespace multibool::llama::cli {

namespace detail {

// The command that continues a stopped run: its checkpoint and the input files given.
inline std::string resume_command(const ParsedOptions& options, const std::filesystem::path& out) {
    std::string command = "multibool-llama finetune --resume " + out.string();
    for (const auto& o : options.command().options) {
        if (o.has(names_input_file) && options.given(o.name)) command += " --" + o.name + " " + *options.text(o.name);
    }
    return command;
}

// After the last step: --export's model file, then the student's validation perplexity as
// stdout's last line.
template <std::size_t K, std::size_t G>
int finish(const FineTuner<K, G>& tuner, const FineTuneRun& run) {
    if (!run.group.leads()) return exit_success;
    const PerplexityResult result = perplexity(tuner.student(), run.valid, run.threads);
    if (const auto exported = run.options.text("export")) {
        const auto deployed = tuner.deployable();
        save_model(deployed, std::filesystem::path(*exported));
        std::cerr << "exported " << *exported << " (fp16 scales); its validation perplexity with the default backend: "
                  << perplexity(deployed, run.valid, run.threads).perplexity() << "\n";
    }
    std::printf("perplexity: %.4f tokens: %zu\n", result.perplexity(), result.tokens);
    return exit_success;
}

template <std::size_t K, std::size_t G>
int train(FineTuner<K, G>& tuner, const FineTuneRun& run, std::size_t steps) {
    const ParsedOptions& options = run.options;
    const std::size_t eval_every = *options.count("eval-every");
    const std::size_t save_every = *options.count("save-every");
    const std::filesystem::path log_path = options.text("log").value_or(run.out.string() + ".csv");
    // Rank 0 alone validates and writes the log, the progress and the checkpoints.
    const bool leads = run.group.leads();
    std::optional<TrainingLog> log;
    if (leads) log.emplace(log_path, K, tuner.steps_done());
    const auto validate = [&] { return perplexity(tuner.student(), run.valid, run.threads).perplexity(); };
    const std::size_t tokens_per_step = tuner.options().batch * tuner.options().length;
    if (tuner.steps_done() == 0 && leads) {
        const double start = validate();
        std::cerr << "validation perplexity before fine-tuning: " << start << "\n";
        log->start_row(start);
    }
    if (leads) {
        const auto state = tuner.state_bytes_per_weight();
        std::fprintf(stderr,
                     "training state per weight: flip policy %.3f B, scale AdamW %.3f B (bits %.3f B, scales %.3f B); "
                     "float-parameter AdamW %zu B in all\n",
                     state.flip, state.scales, double(K) / 8.0, double(K) * sizeof(float) / double(G),
                     state.float_optimizer_bytes);
    }
    {
        const StopSignal stop;
        const auto started = std::chrono::steady_clock::now();
        const std::size_t first = tuner.steps_done();
        while (tuner.steps_done() < steps) {
            const auto step_started = std::chrono::steady_clock::now();
            const FineTuneStep s = tuner.step(run.threads);
            const auto now = std::chrono::steady_clock::now();
            const double step_seconds = std::chrono::duration<double>(now - step_started).count();
            const double elapsed = std::chrono::duration<double>(now - started).count();
            const std::size_t done = tuner.steps_done();
            const double per_step = elapsed / double(done - first);
            const bool last = done == steps;
            if (leads) {
                std::optional<double> ppl;
                if (last || (eval_every != 0 && done % eval_every == 0)) ppl = validate();
                log->step_row(done, done * tokens_per_step, s, double(tokens_per_step) / step_seconds, ppl);
                show_progress(done, steps, s, double(tokens_per_step) / step_seconds, per_step * double(steps - done));
                if (ppl && !last) {
                    std::cerr << (stderr_is_terminal() ? "\n" : "") << "step " << done << ": validation perplexity "
                              << *ppl << "\n";
                }
            }
            // Every rank takes the same decision, whichever received the signal (during the
            // validation too).
            const bool stopping = run.group.any(stop.requested());
            if (leads && (last || stopping || (save_every != 0 && done % save_every == 0))) tuner.save(run.out);
            if (stopping && !last) {
                std::cerr << "\nstopped at step " << done << "; saved " << run.out.string()
                          << "; continue with: " << resume_command(options, run.out) << "\n";
                return exit_after_stop_signal;
            }
        }
    }
    std::cerr << "saved " << run.out.string() << " and " << log_path.string() << "\n";
    return finish(tuner, run);
}

template <std::size_t K, std::size_t G>
int fine_tune(const FineTuneRun& run) {
    std::optional<FineTuner<K, G>> tuner;
    if (run.resume) {
        tuner.emplace(FineTuner<K, G>::load(*run.resume, run.teacher, run.train));
        std::cerr << "resuming " << *run.resume << " at step " << tuner->steps_done() << " (K=" << K << ", G=" << G
                  << ", " << flip_policy_name(tuner->options().policy) << ")\n";
    } else {
        std::optional<CalibrationStatistics> calibration;
        ConversionOptions conversion;
        conversion.initializer = run.initializer;
        conversion.starts.error_feedback = false;
        if (run.initializer == Initializer::activation_aware) {
            calibration = calibrate(run.teacher, run.train, default_calibration_tokens);
            conversion.calibration = std::cref(*calibration);
        }
        auto converted = convert<K, G, float, ExactBackend>(run.teacher, conversion);
        print_totals(converted.second, std::cerr);
        tuner.emplace(run.teacher, std::move(converted.first), run.train, run.fine_tune);
    }
    tuner->share_steps(run.group);
    // A resumed run keeps its planned length unless --steps is given.
    const std::size_t steps =
        run.resume && !run.options.given("steps") ? tuner->planned_steps() : *run.options.count("steps");
    tuner->set_planned_steps(steps);
    if (tuner->steps_done() >= steps) {
        // A finished run is exported as it is (no step, no checkpoint or log written).
        if (run.resume && run.options.given("export") && tuner->steps_done() == steps) return finish(*tuner, run);
        throw UsageError("the run is at step " + std::to_string(tuner->steps_done()) +
                         "; give --steps above it, or --export F to export it as it is");
    }
    return train(*tuner, run, steps);
}

}  // namespace detail

template <std::size_t K>
int fine_tune_with_kernels(std::size_t group, const FineTuneRun& run) {
    int status = exit_success;
    with_group(group, [&]<std::size_t G>() { status = detail::fine_tune<K, G>(run); });
    return status;
}

}  // namespace multibool::llama::cli
