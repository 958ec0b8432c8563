// multibool-llama finetune: the teacher, texts and tokenizer read and checked against the command
// line (command_lines.hpp), then the dispatch to the fine-tuning of the run's K (finetune_run.hpp).
#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "llama/checkpoint.hpp"
#include "llama/cli/command_lines.hpp"
#include "llama/cli/commands.hpp"
#include "llama/cli/finetune_run.hpp"
#include "llama/cli/model_inputs.hpp"
#include "llama/cli/process_group.hpp"
#include "llama/cli/supported_shapes.hpp"
#include "llama/collective.hpp"
#include "llama/finetune_checkpoint.hpp"
#include "llama/finetune_options.hpp"
#include "llama/tokenizer.hpp"

namespace multibool::llama::cli {

namespace {

int run_finetune_in(const ParsedOptions& options, Collective& ranks) {
    const FineTuneCommandLine line = fine_tune_command_line(options);
    const auto& resume = line.resume;
    std::size_t kernels = line.kernels;
    std::size_t group = line.group;
    if (resume) {
        const FineTuneHeader header = read_fine_tune_header(*resume);
        kernels = header.kernels;
        group = header.group_size;
        require_supported(kernels, group);
    }
    FineTuneOptions fine_tune = line.fine_tune;
    const std::filesystem::path model_path = options.path("model");
    std::cerr << "loading " << model_path.string() << "\n";
    const Checkpoint teacher = load_float_checkpoint(model_path);
    fine_tune.loss.hidden_blocks = hidden_block_mask(line.hidden_blocks, teacher.config().n_layers);
    // Checked now, not at the first checkpoint: the checkpoint's header must hold the model.
    check_llama2c_header(teacher.config(), model_path.string());
    // A model with a shorter context (llama.cpp's GGUF of stories260K states 128) trains on windows of that length.
    if (!resume && !options.given("seq")) fine_tune.length = std::min(fine_tune.length, teacher.config().seq_len);
    try {
        if (!resume) check_fine_tune_options(fine_tune, teacher.config());
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }
    const TextTokenizer tokenizer = load_matching_tokenizer(options, teacher.config());
    // Training windows and the checkpoint's validation start with llama2.c's BOS id.
    if (tokenizer.required_bos() != Tokenizer::bos) {
        throw std::runtime_error("fine-tuning starts every window with BOS id " + std::to_string(Tokenizer::bos) +
                                 " (llama2.c's and LLaMA's SentencePiece id); this " + std::string(tokenizer.kind()) +
                                 " vocabulary's BOS is " + std::to_string(tokenizer.required_bos()));
    }
    const std::filesystem::path train_path = options.path("train");
    const std::filesystem::path valid_path = options.path("valid");
    const std::vector<int> train = tokenizer.encode(read_text_file(train_path), false, false);
    const std::vector<int> valid = tokenizer.encode(read_text_file(valid_path), false, false);
    std::cerr << train_path.string() << ": " << train.size() << " tokens; " << valid_path.string() << ": "
              << valid.size() << " tokens; " << line.threads << " thread(s)\n";
    if (ranks.ranks() > 1) {
        std::cerr << "data-parallel over " << ranks.ranks() << " MPI ranks, " << fine_tune.batch
                  << " sequences per step shared among them\n";
    }
    const FineTuneRun run{options,          teacher, train,    valid,        fine_tune,
                          line.initializer, resume,  line.out, line.threads, ranks};
    int status = exit_success;
    with_kernels(kernels, [&]<std::size_t K>() { status = fine_tune_with_kernels<K>(group, run); });
    return status;
}

// Under mpirun (with MPI built in) every rank runs this command; an error on any rank ends them all.
int run_finetune(const ParsedOptions& options) {
    ProcessGroup group;
    if (group.ranks() == 1) return run_finetune_in(options, group.collective());
    try {
        return run_finetune_in(options, group.collective());
    } catch (const std::exception& e) {
        group.abort(e);
    }
}

}  // namespace

Command finetune_command() { return with_run(finetune_command_line(), run_finetune); }

}  // namespace multibool::llama::cli
