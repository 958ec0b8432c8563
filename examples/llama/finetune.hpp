#pragma once
// Fine-tuning a converted LLaMA model in the Boolean domain (Tran & Nguyen, ICLR 2026): each step
// distills the float teacher into the student on a batch of windows of the training text, flips
// bits of the trainable kernels with a FlipOptimizer fed by the weight-gradient tiles, and moves
// the scales (and, optionally, the embedding, norms and classifier) by AdamW. No float latent weights.
//
// Everything a step does is a function of (options, step number, training tokens, state): the
// windows are drawn from counter-based randomness (training_windows.hpp), and every product and
// sum runs in an order that does not depend on the thread count. So a run resumed from a
// checkpoint (finetune_checkpoint.hpp) reproduces the uninterrupted run bit for bit.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "llama/backprop.hpp"
#include "llama/checkpoint.hpp"
#include "llama/collective.hpp"
#include "llama/conversion.hpp"
#include "llama/distillation.hpp"
#include "llama/finetune_checkpoint.hpp"
#include "llama/finetune_options.hpp"
#include "llama/model_file.hpp"
#include "llama/teacher_samples.hpp"
#include "llama/training_windows.hpp"
#include "llama/transformer.hpp"
#include "multibool/backends/default_backend.hpp"
#include "multibool/core/binary_io.hpp"
#include "multibool/core/serialization.hpp"
#include "multibool/nn/dense_linear.hpp"
#include "multibool/nn/multibool_linear.hpp"
#include "multibool/training/adamw.hpp"
#include "multibool/training/bold_policy.hpp"
#include "multibool/training/expected_improvement_policy.hpp"
#include "multibool/training/flip_optimizer.hpp"
#include "multibool/training/scale_adamw.hpp"
#include "multibool/training/scale_gradient.hpp"
#include "multibool/training/weight_gradient.hpp"

namespace multibool::llama {

// What one step did.
struct FineTuneStep {
    std::size_t step = 0;  // the step's number (the state's step count before it)
    LossParts loss;
    FlipStatistics flips;  // over every projection
    std::size_t tokens = 0;
};

// Rows of the weight gradient dY^T X formed and consumed at once, per tile.
inline constexpr std::size_t gradient_tile_rows = 16;

template <std::size_t K, std::size_t G>
class FineTuner {
public:
    // Exact float products (no int8 tables) and float scales while training; single-threaded
    // layers, because the batch is what is shared among threads.
    using Linear = MultiBoolLinear<K, G, float, std::uint64_t, ExactBackend>;
    using Student = Transformer<Linear>;
    using Matrix = typename Linear::matrix_type;
    using Policy =
        std::variant<ExpectedImprovementPolicy, BoldPolicy<float>, BoldPolicy<half>, BoldPolicy<std::int8_t>>;

    // One projection's optimizer state.
    struct ProjectionState {
        Policy policy;
        ScaleAdamW<K> scales;
        ScaleGradient<K> scale_gradient;  // this step's; kept so that a step allocates none
    };

    // A new run from a converted student. The tuner keeps its own copy of the training tokens.
    FineTuner(const Checkpoint& teacher, Student student, std::vector<int> train_tokens, FineTuneOptions options)
        : FineTuner(teacher, std::move(student), std::move(train_tokens), std::move(options), 0) {
        for (std::size_t l = 0; l < config().n_layers; ++l) {
            for (Projection p : projections) {
                const Matrix& m = student_.blocks()[l].projection(p).weights();
                projections_.push_back(make_state(m, options_));
            }
        }
        if (options_.train_float) float_optimizers_ = make_float_optimizers(student_, options_);
    }

    // A checkpoint's whole run, read without its teacher (evaluating the student needs none).
    struct SavedRun {
        FineTuneOptions options;
        std::uint64_t teacher_fingerprint = 0;
        std::uint64_t data_fingerprint = 0;
        std::size_t step = 0;
        std::size_t planned_steps = 0;
        Student student;
        std::vector<ProjectionState> projections;
        std::vector<AdamW> float_optimizers;
    };

    // Refuses a checkpoint written for another K or G, with options no run accepts, or a file that
    // is corrupted or truncated.
    static SavedRun read_run(const std::filesystem::path& path) {
        const std::string file = path.string();
        std::istringstream in(verified_fine_tune_body(path));
        BinaryReader r(in, file);
        const FineTuneHeader header = read_fine_tune_header(r);
        r.expect("kernels", header.kernels, K);
        r.expect("group_size", header.group_size, G);
        const Config c = detail::read_config(r);
        FineTuneOptions options = read_fine_tune_options(r, header.version);
        try {
            options = check_fine_tune_options(std::move(options), c);
        } catch (const std::invalid_argument& e) {
            throw FormatError(file, "options", "options a run accepts", e.what());
        }
        const auto teacher = r.read<std::uint64_t>("teacher fingerprint");
        const auto data = r.read<std::uint64_t>("training-text fingerprint");
        const auto step = r.read<std::uint64_t>("step");
        const auto planned = r.read<std::uint64_t>("planned steps");

        auto stored = detail::read_float_tensors<Linear>(r, c);
        std::vector<ProjectionState> states;
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            for (Projection p : projections) {
                Matrix m = detail::read_projection<Matrix>(in, file, c, l, p);
                ProjectionState state = make_state(m, options);
                BinaryReader state_reader(in, file + " (layer " + std::to_string(l) + " " + projection_name(p) + ")");
                std::visit([&](auto& policy) { policy.read_state(state_reader); }, state.policy);
                state.scales.read_state(state_reader);
                states.push_back(std::move(state));
                stored.blocks[l].projection(p) = Linear(std::move(m));
            }
        }
        SavedRun run{options,
                     teacher,
                     data,
                     step,
                     planned,
                     Student(c, std::move(stored.tensors), std::move(stored.blocks)),
                     std::move(states),
                     {}};
        if (options.train_float) {
            run.float_optimizers = make_float_optimizers(run.student, options);
            BinaryReader float_reader(in, file + " (float optimizers)");
            for (AdamW& o : run.float_optimizers) o.read_state(float_reader);
        }
        if (in.peek() != std::char_traits<char>::eof()) {
            throw FormatError(file, "end", "the checksum after the last optimizer state", "more bytes");
        }
        return run;
    }

    // Resumes from a checkpoint written by save(): refuses, beyond what read_run refuses, one
    // written for a different teacher or training text.
    static FineTuner load(const std::filesystem::path& path, const Checkpoint& teacher, std::vector<int> train_tokens) {
        const std::string file = path.string();
        SavedRun run = read_run(path);
        if (run.student.config() != teacher.config()) {
            throw FormatError(file, "model config", "the teacher's", "a different dim, layers, heads or vocabulary");
        }
        const auto expect = [&](const char* field, std::uint64_t found, std::uint64_t expected) {
            if (found != expected) throw FormatError(file, field, std::to_string(expected), std::to_string(found));
        };
        expect("teacher fingerprint", run.teacher_fingerprint, teacher_fingerprint(teacher));
        expect("training-text fingerprint", run.data_fingerprint, fingerprint(std::span<const int>(train_tokens)));
        FineTuner tuner(teacher, std::move(run.student), std::move(train_tokens), run.options, run.step);
        tuner.planned_steps_ = run.planned_steps;
        tuner.projections_ = std::move(run.projections);
        tuner.float_optimizers_ = std::move(run.float_optimizers);
        return tuner;
    }

    // Writes the whole state atomically: a crash mid-write leaves the previous file intact.
    void save(const std::filesystem::path& path) const {
        std::ostringstream body;
        {
            BinaryWriter w(body);
            write_fine_tune_header(w, {K, G});
            detail::write_config(w, config());
            write_fine_tune_options(w, options_);
            w.write(teacher_fingerprint_);
            w.write(data_fingerprint_);
            w.write(std::uint64_t{step_});
            w.write(std::uint64_t{planned_steps_});
            detail::write_float_tensors(w, student_);
        }
        std::size_t index = 0;
        for (const auto& block : student_.blocks()) {
            for (Projection p : projections) {
                multibool::save(block.projection(p).weights(), body);
                BinaryWriter w(body);
                const ProjectionState& state = projections_[index++];
                std::visit([&](const auto& policy) { policy.write_state(w); }, state.policy);
                state.scales.write_state(w);
            }
        }
        {
            BinaryWriter w(body);
            for (const AdamW& o : float_optimizers_) o.write_state(w);
        }
        const std::string bytes = std::move(body).str();
        Fnv1a hash;
        hash.update(std::as_bytes(std::span<const char>(bytes)));
        write_file_atomically(path, [&](std::ostream& out) {
            out.write(bytes.data(), std::streamsize(bytes.size()));
            const std::uint64_t checksum = hash.value();
            out.write(reinterpret_cast<const char*>(&checksum), sizeof checksum);
        });
    }

    // From now on each step computes only this rank's share of the batch and gathers the rest
    // from the other ranks of `group` (collective.hpp), which must outlive the tuner's steps.
    void share_steps(Collective& group) noexcept { group_ = &group; }

    // One step on windows of the training text; `threads` share this rank's sequences.
    FineTuneStep step(std::size_t threads) {
        const Config& c = config();
        FineTuneStep report;
        report.step = step_;
        report.tokens = options_.batch * options_.length;
        const std::size_t batch = options_.batch, length = options_.length;
        const SequenceShare share = group_->share(batch);
        draw_training_windows(train_tokens_, options_.seed, step_, batch, length, inputs_, targets_);
        // The teacher writes the last teacher_sequences of the batch; each rank those in its share.
        const std::size_t written = options_.teacher_sequences;
        const std::size_t first_written = std::max(batch - written, share.first);
        write_teacher_sequences(teacher_, options_.seed, step_, first_written,
                                std::max(first_written, share.last) - first_written, length, inputs_, targets_,
                                threads);
        // Every rank reads every token for the embedding's gradient; targets only in its share.
        if (written != 0) group_->gather_sequences(std::span<int>(inputs_), batch, length);
        apply_schedules();
        if (options_.loss.needs_teacher()) teacher_pass_.forward(teacher_, inputs_, threads, share);
        student_pass_.forward(student_, inputs_, threads, share);
        std::vector<MatrixView<const float>> student_hidden, teacher_hidden;
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            student_hidden.push_back(student_pass_.hidden(l));
            if (options_.loss.needs_teacher()) teacher_hidden.push_back(teacher_pass_.hidden(l));
        }
        const MatrixView<float> dlogits(std::span<float>(dlogits_), report.tokens, c.vocab_size);
        distillation_terms(
            {student_pass_.logits(), options_.loss.needs_teacher() ? teacher_pass_.logits() : MatrixView<const float>(),
             student_hidden, teacher_hidden, targets_},
            options_.loss, {share.first * length, share.last * length}, dlogits, hidden_gradients_, token_losses_,
            threads);
        group_->gather_sequences(std::span<double>(token_losses_.kl), batch, length);
        group_->gather_sequences(std::span<double>(token_losses_.cross_entropy), batch, length);
        group_->gather_sequences(std::span<double>(token_losses_.hidden_squares), batch, length);
        report.loss = sum_losses(token_losses_, options_.loss, c.dim, c.n_layers);
        if (!std::isfinite(report.loss.total)) {
            throw std::runtime_error("fine-tuning step " + std::to_string(step_) + ": the loss is not finite");
        }
        std::vector<MatrixView<const float>> dhidden;
        for (const auto& g : hidden_gradients_) {
            dhidden.push_back(g.empty() ? MatrixView<const float>()
                                        : MatrixView<const float>(std::span<const float>(g), report.tokens, c.dim));
        }
        student_pass_.backward(student_, dlogits, dhidden, threads, share, options_.train_float);
        student_pass_.gather(*group_);
        if (options_.train_float) {
            group_->gather_sequences(std::span<float>(dlogits_), batch, length * c.vocab_size);
            student_pass_.collect_float_gradients(dlogits, threads, float_gradients_);
        }

        std::size_t index = 0;
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            for (Projection p : projections) {
                report.flips += update_projection(l, p, projections_[index], index, threads);
                ++index;
            }
        }
        if (options_.train_float) update_float_parameters();
        ++step_;
        return report;
    }

    // The student as deployed: fp16 scales and the default (table-lookup) backend.
    [[nodiscard]] BooleanTransformer<K, G> deployable() const {
        using Deployed = BooleanLinear<K, G>;
        const Config& c = config();
        std::vector<Block<Deployed>> blocks(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const Block<Linear>& trained = student_.blocks()[l];
            blocks[l].rms_att = trained.rms_att;
            blocks[l].rms_ffn = trained.rms_ffn;
            for (Projection p : projections) {
                blocks[l].projection(p) = Deployed(scale_cast<half>(trained.projection(p).weights()));
            }
        }
        const auto copy = [](std::span<const float> v) { return std::vector<float>(v.begin(), v.end()); };
        FloatTensors tensors{copy(student_.token_embedding().data()), copy(student_.rms_final()),
                             c.shared_classifier ? std::vector<float>() : copy(student_.classifier().data())};
        return BooleanTransformer<K, G>(c, std::move(tensors), std::move(blocks));
    }

    [[nodiscard]] const Config& config() const noexcept { return student_.config(); }
    [[nodiscard]] const Student& student() const noexcept { return student_; }
    [[nodiscard]] const FineTuneOptions& options() const noexcept { return options_; }
    [[nodiscard]] std::size_t steps_done() const noexcept { return step_; }
    // The run's length as last asked for, kept in the checkpoint so that a resume without a new
    // target finishes the same run; the schedules run over it, so a decaying one needs it set.
    [[nodiscard]] std::size_t planned_steps() const noexcept { return planned_steps_; }
    void set_planned_steps(std::size_t steps) noexcept { planned_steps_ = steps; }

    // Persistent optimizer state per projection weight: the flip policy's, and the scales'
    // AdamW moments (bits and scales themselves excluded; float-parameter optimizers neither).
    struct StateBytes {
        double flip = 0.0;
        double scales = 0.0;
        std::size_t float_optimizer_bytes = 0;
    };
    [[nodiscard]] StateBytes state_bytes_per_weight() const {
        StateBytes out;
        std::size_t weights = 0, index = 0;
        for (const auto& block : student_.blocks()) {
            for (Projection p : projections) {
                const Matrix& m = block.projection(p).weights();
                const std::size_t n = m.rows() * m.cols();
                weights += n;
                const ProjectionState& state = projections_[index++];
                out.flip += std::visit([](const auto& policy) { return double(policy.state_bytes_per_weight()); },
                                       state.policy) *
                            double(n);
                out.scales += double(state.scales.state_bytes());
            }
        }
        out.flip /= double(weights);
        out.scales /= double(weights);
        for (const AdamW& o : float_optimizers_) out.float_optimizer_bytes += o.state_bytes();
        return out;
    }

private:
    static ProjectionState make_state(const Matrix& m, const FineTuneOptions& o) {
        return {make_policy(m, o), ScaleAdamW<K>(m, {o.scale_learning_rate}), ScaleGradient<K>(m)};
    }

    FineTuner(const Checkpoint& teacher, Student student, std::vector<int> train_tokens, FineTuneOptions options,
              std::size_t step)
        : options_(check_fine_tune_options(std::move(options), teacher.config())),
          teacher_(Transformer<DenseLinear>::from_checkpoint(
              teacher, [](MatrixView<const float> w, std::size_t, Projection) { return DenseLinear(w); })),
          student_(std::move(student)),
          train_tokens_(std::move(train_tokens)),
          teacher_fingerprint_(teacher_fingerprint(teacher)),
          data_fingerprint_(fingerprint(std::span<const int>(train_tokens_))),
          step_(step),
          teacher_pass_(teacher.config(), options_.batch, options_.length),
          student_pass_(teacher.config(), options_.batch, options_.length) {
        if (student_.config() != teacher.config()) {
            throw std::invalid_argument("FineTuner: the student and the teacher have different configs");
        }
        if (train_tokens_.size() < options_.length) {
            throw std::invalid_argument("FineTuner: the training text has " + std::to_string(train_tokens_.size()) +
                                        " tokens; a window of --seq " + std::to_string(options_.length) +
                                        " needs at least " + std::to_string(options_.length));
        }
        const std::size_t tokens = options_.batch * options_.length;
        inputs_.resize(tokens);
        targets_.resize(tokens);
        dlogits_.resize(tokens * config().vocab_size);
    }

    static Policy make_policy(const Matrix& m, const FineTuneOptions& o) {
        if (o.policy == FlipPolicyKind::bold) {
            const BoldOptions bold{o.resolved_flip_rate(), o.trainable()};
            switch (o.accumulator) {
                case AccumulatorKind::float16:
                    return BoldPolicy<half>(m, bold);
                case AccumulatorKind::int8:
                    return BoldPolicy<std::int8_t>(m, bold);
                case AccumulatorKind::float32:
                    break;
            }
            return BoldPolicy<float>(m, bold);
        }
        ExpectedImprovementOptions e;
        e.seed = o.seed;
        e.eta = o.resolved_flip_rate();
        e.trainable = o.trainable();
        return ExpectedImprovementPolicy(e);
    }

    // This step's learning rates and eta: the options' values times their schedules' factors.
    void apply_schedules() {
        const Schedule& lr = options_.learning_rate_schedule;
        const Schedule& flips = options_.flip_schedule;
        if (planned_steps_ == 0 && (lr.shape != ScheduleShape::constant || flips.shape != ScheduleShape::constant)) {
            throw std::logic_error("FineTuner::step: a decaying schedule needs set_planned_steps() first");
        }
        const double lr_factor = lr.factor(step_, planned_steps_);
        const double eta = options_.resolved_flip_rate() * flips.factor(step_, planned_steps_);
        for (ProjectionState& state : projections_) {
            state.scales.set_learning_rate(static_cast<float>(options_.scale_learning_rate * lr_factor));
            std::visit([&](auto& policy) { policy.set_eta(eta); }, state.policy);
        }
        for (AdamW& o : float_optimizers_)
            o.set_learning_rate(static_cast<float>(options_.float_learning_rate * lr_factor));
    }

    // The B step (flips from the gradient tiles dY^T X) and the scale step of one projection.
    FlipStatistics update_projection(std::size_t layer, Projection p, ProjectionState& state, std::size_t index,
                                     std::size_t threads) {
        Linear& linear = student_.blocks()[layer].projection(p);
        Matrix m = linear.weights();
        ScaleGradient<K>& scale_gradient = state.scale_gradient;
        scale_gradient.clear();
        FlipStatistics total;
        std::visit(
            [&](auto& policy) {
                policy.begin_step({step_, index});
                std::mutex merge;
                for_each_gradient_tile(
                    student_pass_.projection_input(layer, p), student_pass_.projection_output_gradient(layer, p),
                    {gradient_tile_rows, threads}, [&](std::size_t first_row, MatrixView<const float> tile) {
                        scale_gradient.accumulate(m, first_row, tile);
                        const FlipStatistics s = policy.apply(m, first_row, tile);
                        const std::lock_guard lock(merge);
                        total += s;
                    });
                policy.end_step(total);
            },
            state.policy);
        state.scales.step(m, scale_gradient);
        linear.set_weights(std::move(m));
        return total;
    }

    // The float parameters in a fixed order: embedding (the classifier too when tied), classifier
    // when untied, then each block's two norms, then the final norm.
    static std::vector<std::span<float>> float_parameters(Student& student) {
        std::vector<std::span<float>> list{student.token_embedding().data()};
        if (!student.config().shared_classifier) list.push_back(student.classifier().data());
        for (auto& block : student.blocks()) {
            list.push_back(block.rms_att);
            list.push_back(block.rms_ffn);
        }
        list.push_back(student.rms_final());
        return list;
    }
    static std::vector<AdamW> make_float_optimizers(Student& student, const FineTuneOptions& o) {
        std::vector<AdamW> optimizers;
        for (const auto& parameters : float_parameters(student)) {
            optimizers.emplace_back(parameters.size(), AdamWOptions{o.float_learning_rate});
        }
        return optimizers;
    }
    void update_float_parameters() {
        const Config& c = config();
        std::vector<std::span<const float>> gradients{float_gradients_.token_embedding};
        if (!c.shared_classifier) gradients.push_back(float_gradients_.classifier);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            gradients.push_back(std::span<const float>(float_gradients_.rms_att).subspan(l * c.dim, c.dim));
            gradients.push_back(std::span<const float>(float_gradients_.rms_ffn).subspan(l * c.dim, c.dim));
        }
        gradients.push_back(float_gradients_.rms_final);
        const auto parameters = float_parameters(student_);
        for (std::size_t i = 0; i < parameters.size(); ++i) float_optimizers_[i].step(parameters[i], gradients[i]);
    }

    FineTuneOptions options_;
    Transformer<DenseLinear> teacher_;
    Student student_;
    std::vector<int> train_tokens_;
    std::uint64_t teacher_fingerprint_;
    std::uint64_t data_fingerprint_;
    std::size_t step_;
    std::size_t planned_steps_ = 0;
    std::vector<ProjectionState> projections_;  // layer-major, projections in checkpoint order
    std::vector<AdamW> float_optimizers_;       // in float_parameters() order, when they train
    TrainingPass<DenseLinear> teacher_pass_;
    TrainingPass<Linear> student_pass_;
    std::vector<int> inputs_, targets_;
    std::vector<float> dlogits_;
    std::vector<std::vector<float>> hidden_gradients_;
    TokenLosses token_losses_;
    Collective* group_ = &SingleProcess::instance();
    FloatGradients float_gradients_;
};

}  // namespace multibool::llama
