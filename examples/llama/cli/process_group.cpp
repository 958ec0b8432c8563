// ProcessGroup: one process, or the ranks of an MPI job (built with MULTIBOOL_WITH_MPI).
#include "llama/cli/process_group.hpp"

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "llama/cli/options.hpp"

#if MULTIBOOL_WITH_MPI
#include <mpi.h>
#endif

namespace multibool::llama::cli {

namespace {

// The world size mpirun gave this process (Open MPI's, then PMIx's and PMI's variables), or 0
// when no launcher did.
std::size_t launched_ranks() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
        if (const char* value = std::getenv(name); value != nullptr && *value != '\0') {
            return std::strtoull(value, nullptr, 10);
        }
    }
    return 0;
}

#if MULTIBOOL_WITH_MPI
// Every exchange is MPI_Allgatherv in place over MPI_COMM_WORLD, whose default error handler
// aborts the job on a failed call (so no status is checked here). Counts and displacements are
// ints in MPI 3: a larger share is refused by name instead of wrapping.
class MpiCollective final : public Collective {
public:
    MpiCollective() {
        int rank = 0, size = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        rank_ = std::size_t(rank);
        ranks_ = std::size_t(size);
    }
    [[nodiscard]] std::size_t rank() const noexcept override { return rank_; }
    [[nodiscard]] std::size_t ranks() const noexcept override { return ranks_; }
    void all_gather(std::span<float> data, std::span<const std::size_t> offsets) override {
        gather(data.data(), MPI_FLOAT, offsets);
    }
    void all_gather(std::span<double> data, std::span<const std::size_t> offsets) override {
        gather(data.data(), MPI_DOUBLE, offsets);
    }
    void all_gather(std::span<int> data, std::span<const std::size_t> offsets) override {
        gather(data.data(), MPI_INT, offsets);
    }
    [[nodiscard]] bool any(bool flag) override {
        int local = flag ? 1 : 0, global = 0;
        MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return global != 0;
    }

private:
    void gather(void* data, MPI_Datatype type, std::span<const std::size_t> offsets) {
        counts_.resize(ranks_);
        displacements_.resize(ranks_);
        for (std::size_t r = 0; r < ranks_; ++r) {
            if (offsets[r + 1] > std::size_t(INT_MAX)) {
                throw std::length_error("MPI: a gathered buffer of " + std::to_string(offsets[ranks_]) +
                                        " elements is beyond MPI's int counts; use a smaller --batch or --seq");
            }
            displacements_[r] = int(offsets[r]);
            counts_[r] = int(offsets[r + 1] - offsets[r]);
        }
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts_.data(), displacements_.data(), type,
                       MPI_COMM_WORLD);
    }

    std::size_t rank_ = 0, ranks_ = 1;
    std::vector<int> counts_, displacements_;
};
#endif

}  // namespace

ProcessGroup::ProcessGroup() {
    const std::size_t launched = launched_ranks();
#if MULTIBOOL_WITH_MPI
    if (launched != 0) {
        // Only the main thread calls MPI; the thread pool's workers never do.
        int provided = 0;
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        joined_mpi_ = true;
        mpi_ = std::make_unique<MpiCollective>();
        collective_ = mpi_.get();
        // Another MPI's launcher makes each process a job of its own, which would all lead.
        if (mpi_->ranks() != launched || provided < MPI_THREAD_FUNNELED) {
            throw std::runtime_error("mpirun started " + std::to_string(launched) + " processes but MPI sees " +
                                     std::to_string(mpi_->ranks()) +
                                     " (or no MPI_THREAD_FUNNELED): launch with the mpirun of the MPI this "
                                     "multibool-llama was built with");
        }
        if (!leads()) muted_ = std::cerr.rdbuf(&discard_);
    }
#else
    if (launched > 1) {
        throw std::runtime_error("mpirun started " + std::to_string(launched) +
                                 " processes, but this multibool-llama was built without MPI: install Open MPI "
                                 "(libopenmpi-dev) and rebuild with -DMULTIBOOL_WITH_MPI=ON");
    }
#endif
}

ProcessGroup::~ProcessGroup() {
    if (muted_ != nullptr) std::cerr.rdbuf(muted_);
#if MULTIBOOL_WITH_MPI
    if (joined_mpi_) MPI_Finalize();
#endif
}

void ProcessGroup::abort(const std::exception& error) const {
    if (!leads()) std::this_thread::sleep_for(std::chrono::seconds(2));
    const bool usage = dynamic_cast<const UsageError*>(&error) != nullptr;
    if (usage) {
        std::fprintf(stderr, "multibool-llama: %s\nrun 'multibool-llama finetune --help' for usage\n", error.what());
    } else {
        std::fprintf(stderr, "multibool-llama: error: %s\n", error.what());
    }
    std::fflush(stderr);
    const int status = usage ? exit_usage_error : exit_failure;
#if MULTIBOOL_WITH_MPI
    if (joined_mpi_) MPI_Abort(MPI_COMM_WORLD, status);
#endif
    std::_Exit(status);
}

}  // namespace multibool::llama::cli
