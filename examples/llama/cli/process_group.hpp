#pragma once
// The processes a finetune command runs as: one, or every rank of an mpirun launch when the tool
// is built with MULTIBOOL_WITH_MPI (docs/ARCHITECTURE.md, "Data-parallel fine-tuning"). Rank 0
// leads: it alone prints, validates and writes the log and checkpoints; the other ranks' std::cerr
// is muted while the group lives (errors still reach stderr through abort()).
#include <cstddef>
#include <exception>
#include <memory>
#include <streambuf>

#include "llama/collective.hpp"

namespace multibool::llama::cli {

class ProcessGroup {
public:
    // Joins the MPI job when mpirun started this process (its environment says so), else runs as
    // one process. Throws when mpirun started several processes and the tool has no MPI.
    ProcessGroup();
    ~ProcessGroup();
    ProcessGroup(const ProcessGroup&) = delete;
    ProcessGroup& operator=(const ProcessGroup&) = delete;

    [[nodiscard]] Collective& collective() noexcept { return *collective_; }
    [[nodiscard]] bool leads() const noexcept { return collective_->leads(); }
    [[nodiscard]] std::size_t ranks() const noexcept { return collective_->ranks(); }

    // Ends every rank, so that none waits for this one in a collective: the error is printed as
    // main prints it (by rank 0 at once; another rank first waits 2 s, long enough for rank 0's
    // abort to end it when every rank failed alike, so the message is printed once), then the job
    // is aborted with the exit status main would return.
    [[noreturn]] void abort(const std::exception& error) const;

private:
    // A stream buffer that drops what it is given: the other ranks' std::cerr.
    struct Discard : std::streambuf {
        int overflow(int c) override { return c; }
    };

    Discard discard_;
    std::streambuf* muted_ = nullptr;  // std::cerr's buffer while muted
    std::unique_ptr<Collective> mpi_;  // the MPI job's, when this process joined one
    Collective* collective_ = &SingleProcess::instance();
    bool joined_mpi_ = false;
};

}  // namespace multibool::llama::cli
