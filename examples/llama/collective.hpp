#pragma once
// How the processes of a data-parallel fine-tuning run share a step (docs/ARCHITECTURE.md,
// "Data-parallel fine-tuning"). Each rank computes the forward and backward passes of a fixed,
// contiguous share of the batch's sequences; the ranks then gather every per-token row the rest of
// the step reads (the projections' inputs and output gradients, the loss terms), so that every rank
// forms the same weight-gradient tiles, in the same t-order, as one process would, and applies the
// same flips and optimizer steps. Gathering moves bytes without adding them, so the result is
// bit-identical to one process whatever the number of ranks.
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace multibool::llama {

// Sequences [first, last) of a batch.
struct SequenceShare {
    std::size_t first = 0;
    std::size_t last = 0;

    friend constexpr bool operator==(const SequenceShare&, const SequenceShare&) = default;
};

// Rank `rank` of `ranks` computes sequences [B r / R, B (r + 1) / R): contiguous, in rank order,
// sizes differing by at most one (a rank may have none when R > B).
constexpr SequenceShare sequence_share(std::size_t sequences, std::size_t rank, std::size_t ranks) noexcept {
    return {sequences * rank / ranks, sequences * (rank + 1) / ranks};
}

// The operations a step needs from its process group. Every rank calls them in the same order.
class Collective {
public:
    virtual ~Collective() = default;
    [[nodiscard]] virtual std::size_t rank() const noexcept = 0;
    [[nodiscard]] virtual std::size_t ranks() const noexcept = 0;
    // In place: each rank's elements [offsets[r], offsets[r + 1]) of data reach every rank
    // (offsets has ranks() + 1 entries, the last data.size()).
    virtual void all_gather(std::span<float> data, std::span<const std::size_t> offsets) = 0;
    virtual void all_gather(std::span<double> data, std::span<const std::size_t> offsets) = 0;
    virtual void all_gather(std::span<int> data, std::span<const std::size_t> offsets) = 0;
    // On every rank: whether `flag` is true on any rank (a stop request seen by one).
    [[nodiscard]] virtual bool any(bool flag) = 0;

    [[nodiscard]] bool leads() const noexcept { return rank() == 0; }
    [[nodiscard]] SequenceShare share(std::size_t sequences) const noexcept {
        return sequence_share(sequences, rank(), ranks());
    }

    // data holds `sequences` sequences of per_sequence elements each; every rank's share reaches
    // every rank.
    template <class T>
    void gather_sequences(std::span<T> data, std::size_t sequences, std::size_t per_sequence) {
        if (data.size() != sequences * per_sequence) {
            throw std::logic_error("Collective::gather_sequences: " + std::to_string(data.size()) + " elements for " +
                                   std::to_string(sequences) + " sequences of " + std::to_string(per_sequence));
        }
        if (ranks() == 1) return;
        std::vector<std::size_t> offsets(ranks() + 1);
        for (std::size_t r = 0; r <= ranks(); ++r)
            offsets[r] = sequence_share(sequences, r, ranks()).first * per_sequence;
        all_gather(data, offsets);
    }
};

// One process: it computes every sequence and has nothing to gather.
class SingleProcess final : public Collective {
public:
    [[nodiscard]] std::size_t rank() const noexcept override { return 0; }
    [[nodiscard]] std::size_t ranks() const noexcept override { return 1; }
    void all_gather(std::span<float>, std::span<const std::size_t>) override {}
    void all_gather(std::span<double>, std::span<const std::size_t>) override {}
    void all_gather(std::span<int>, std::span<const std::size_t>) override {}
    [[nodiscard]] bool any(bool flag) override { return flag; }

    static SingleProcess& instance() noexcept {
        static SingleProcess single;
        return single;
    }
};

}  // namespace multibool::llama
