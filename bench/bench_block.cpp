// Decode speed of one LLaMA-7B transformer block (dim 4096, hidden 11008, 32 heads; random
// weights) run by the LLaMA example's model code: one token at a fixed position after a 16-token
// prefill, for float32 and for K = 1, 2, 3 Boolean kernels. A 7B model decodes a token through 32
// such blocks, so tokens/s of the model is about the figure here / 32 (the classifier aside).
// See README.md beside this file.
#include "bench_support.hpp"
#include "llama/transformer.hpp"

namespace {

using namespace multibool::bench;
using multibool::MatrixView;
namespace llama = multibool::llama;

// One block and a 32-token vocabulary, so the embedding and the classifier (0.5 MB) are negligible
// next to the block's 202 M weights; the cache holds the prefill and the timed position.
constexpr std::size_t kPrefill = 16;
const llama::Config kConfig{.dim = 4096,
                            .hidden_dim = 11008,
                            .n_layers = 1,
                            .n_heads = 32,
                            .n_kv_heads = 32,
                            .vocab_size = 32,
                            .seq_len = kPrefill + 1,
                            .shared_classifier = true};

std::size_t index_of(llama::Projection p) { return static_cast<std::size_t>(p); }

// The seven projections' float weights (808 MB), drawn once for every variant of the block.
MatrixView<const float> float_projection(llama::Projection p) {
    static const auto weights = [] {
        std::array<std::vector<float>, llama::projections.size()> w;
        for (const llama::Projection q : llama::projections) {
            const auto [rows, cols] = llama::projection_shape(kConfig, q);
            w[index_of(q)] = random_floats(rows * cols, 1000 + index_of(q));
        }
        return w;
    }();
    const auto [rows, cols] = llama::projection_shape(kConfig, p);
    return {std::span<const float>(weights[index_of(p)]), rows, cols};
}

// Their greedy quantization, once per K: the slow step (seconds), shared by every backend.
template <std::size_t K>
const Matrix<K>& quantized_projection(llama::Projection p) {
    static const auto matrices = [] {
        std::array<Matrix<K>, llama::projections.size()> m;
        for (const llama::Projection q : llama::projections)
            m[index_of(q)] = greedy_residual<Matrix<K>>(float_projection(q));
        return m;
    }();
    return matrices[index_of(p)];
}

#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
// The float layer with OpenBLAS products: the tuned, multi-threaded float32 block (DenseLinear's
// plain loop runs on one thread). Backward products stay DenseLinear's; decoding never calls them.
class OpenBlasLinear : public multibool::DenseLinear {
public:
    using DenseLinear::DenseLinear;
    void forward(std::span<const float> x, std::span<float> y) const {
        openblas_sgemv(weights(), {x, 1, x.size()}, {y, 1, y.size()});
    }
    // The model calls this batch form for every decode step too; for one token sgemv is several
    // times faster than OpenBLAS's sgemm.
    void forward(MatrixView<const float> xs, MatrixView<float> ys) const {
        if (xs.rows() == 1) {
            openblas_sgemv(weights(), xs, ys);
        } else {
            openblas_sgemm(weights(), xs, ys);
        }
    }
};
#endif

// A model of one block and a session whose cache holds the prefill.
template <class Linear>
struct Replica {
    llama::Transformer<Linear> model;
    llama::Session session;
};

// A one-block model whose projections are make_linear(p); norm weights 1, a random embedding.
template <class Linear, class MakeLinear>
Replica<Linear> make_replica(MakeLinear& make_linear) {
    std::vector<llama::Block<Linear>> blocks(1);
    blocks[0].rms_att.assign(kConfig.dim, 1.0f);
    blocks[0].rms_ffn.assign(kConfig.dim, 1.0f);
    for (const llama::Projection p : llama::projections) blocks[0].projection(p) = make_linear(p);
    llama::FloatTensors tensors{
        random_floats(kConfig.vocab_size * kConfig.dim, 77), std::vector<float>(kConfig.dim, 1.0f), {}};
    Replica<Linear> replica{llama::Transformer<Linear>(kConfig, std::move(tensors), std::move(blocks)),
                            llama::Session(kConfig)};
    std::array<int, kPrefill> prompt{};
    for (std::size_t t = 0; t < kPrefill; ++t) prompt[t] = int(t % kConfig.vocab_size);
    replica.model.forward(prompt, 0, replica.session, llama::Logits::last);
    return replica;
}

// The replicas of one variant of the block and the projections' weight bytes of one replica.
template <class Linear>
struct Replicas {
    std::vector<Replica<Linear>> copies;
    std::size_t bytes_each = 0;
};

// Times one decode step at position kPrefill (rewritten each time, so the cost does not drift),
// cycling through enough replicas that the block's weights come from DRAM, as they do in a
// 32-block model. block_bytes() gives the projections' weight bytes of one replica.
template <class Linear, class MakeLinear, class BlockBytes>
void block_case(benchmark::State& state, std::size_t threads, MakeLinear make_linear, BlockBytes block_bytes) {
    auto& replicas = latest<Replicas<Linear>>(threads, [&] {
        Replicas<Linear> made{{}, block_bytes()};
        const std::size_t count = cold_copies(made.bytes_each);
        made.copies.reserve(count);
        while (made.copies.size() < count) made.copies.push_back(make_replica<Linear>(make_linear));
        return made;
    });
    const double seconds = seconds_per_iteration(state, [&](std::size_t step) {
        Replica<Linear>& r = replicas.copies[step % replicas.copies.size()];
        const int token = int(step % kConfig.vocab_size);
        return r.model.forward(std::span(&token, 1), kPrefill, r.session, llama::Logits::last).data().data();
    });
    state.counters["tokens_per_s"] = 1.0 / seconds;
    std::size_t weights = 0;
    for (const llama::Projection p : llama::projections) weights += float_projection(p).data().size();
    report_weights(state, double(replicas.bytes_each), double(weights), seconds);
}

std::size_t float_block_bytes() {
    std::size_t bytes = 0;
    for (const llama::Projection p : llama::projections) bytes += sizeof(float) * float_projection(p).data().size();
    return bytes;
}

template <class Adapter, std::size_t K>
std::size_t backend_block_bytes() {
    std::size_t bytes = 0;
    const auto backend = make_backend<typename Adapter::backend_type>(1);
    for (const llama::Projection p : llama::projections) {
        bytes += Adapter::template bytes<K>(Adapter::template prepare<K>(backend, quantized_projection<K>(p)));
    }
    return bytes;
}

std::string block_name(std::string_view variant, std::size_t k, std::size_t threads) {
    return case_name("BM_Block7B", variant, {{"K", kernels_field(k)}, {"threads", std::to_string(threads)}});
}

void register_all() {
    add_case(block_name("f32", 0, 1), [](benchmark::State& state) {
        block_case<multibool::DenseLinear>(
            state, 1, [](llama::Projection p) { return multibool::DenseLinear(float_projection(p)); },
            float_block_bytes);
    });
    for (const std::size_t threads : kThreadCounts) {
#ifdef MULTIBOOL_BENCH_HAS_OPENBLAS
        add_case(block_name("openblas", 0, threads), [threads](benchmark::State& state) {
            openblas_set_num_threads(int(threads));
            block_case<OpenBlasLinear>(
                state, threads, [](llama::Projection p) { return OpenBlasLinear(float_projection(p)); },
                float_block_bytes);
        });
#endif
        for_each_backend([&]<class Adapter>(std::string_view name, Scope scope) {
            // The scalar reference would take seconds per token.
            if (scope == Scope::reference) return;
            for_each_k([&]<std::size_t K>() {
                add_case(block_name(name, K, threads), [threads](benchmark::State& state) {
                    using Linear = typename Adapter::template linear_type<K>;
                    const auto backend = make_backend<typename Adapter::backend_type>(threads);
                    block_case<Linear>(
                        state, threads,
                        [&](llama::Projection p) {
                            return Adapter::template make_linear<K>(backend, quantized_projection<K>(p));
                        },
                        backend_block_bytes<Adapter, K>);
                });
            });
        });
    }
}

}  // namespace

int main(int argc, char** argv) { return run_suite(argc, argv, "0.2", register_all); }
