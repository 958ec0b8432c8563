#pragma once
// A small persistent thread pool for the kernels: a product of a few hundred microseconds cannot
// afford to start threads, so workers are started once and woken per call. Work is always split
// into contiguous ranges computed the same way for any thread count, and every output element is
// computed by exactly one thread in a fixed order, so results do not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace multibool {

class ThreadPool {
public:
    // workers: threads started besides the callers, which always take part in their own calls.
    explicit ThreadPool(std::size_t workers) {
        threads_.reserve(workers);
        for (std::size_t w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
    }

    // One worker per hardware thread beyond the first, started on first use.
    static ThreadPool& shared() {
        static ThreadPool pool(std::max(1u, std::thread::hardware_concurrency()) - 1);
        return pool;
    }

    [[nodiscard]] std::size_t workers() const noexcept { return threads_.size(); }

    // Calls task(part) for every part in [0, parts) and returns when all are done, rethrowing the
    // first exception a part threw. Callers on several threads share the workers: each call is
    // queued, its caller works on its own parts, and an idle worker takes a part of the oldest
    // call with parts left. A call from inside a task runs on its caller (the workers may all be
    // waiting on it). Either way the partition, hence the result, is the same.
    void run(std::size_t parts, const std::function<void(std::size_t)>& task) {
        if (parts <= 1 || threads_.empty() || inside_task_) {
            // Like the pooled path: every part runs, then the first exception is rethrown.
            std::exception_ptr first_error;
            for (std::size_t p = 0; p < parts; ++p) {
                try {
                    task(p);
                } catch (...) {
                    if (!first_error) first_error = std::current_exception();
                }
            }
            if (first_error) std::rethrow_exception(first_error);
            return;
        }
        Call call{&task, parts};
        {
            std::lock_guard lock(mutex_);
            queue_.push_back(&call);
            queued_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        while (take_part(&call)) {
        }
        const auto done = [&] { return call.finished.load(std::memory_order_acquire) == parts; };
        spin_until(done);
        std::unique_lock lock(mutex_);
        done_.wait(lock, done);
        if (call.error) std::rethrow_exception(call.error);
    }

private:
    // One run(): its parts are claimed in order, under mutex_, and counted as they finish. It
    // leaves the queue once its last part is claimed, and its caller returns once all finished,
    // so no worker holds it after that.
    struct Call {
        Call(const std::function<void(std::size_t)>* task, std::size_t parts) noexcept : task(task), parts(parts) {}
        const std::function<void(std::size_t)>* task;
        std::size_t parts;
        std::size_t claimed = 0;
        std::atomic<std::size_t> finished{0};
        std::exception_ptr error;
    };

    // A product of tens of microseconds cannot wait for the operating system to wake a sleeping
    // thread (also microseconds, and more on a loaded machine): a thread that has nothing to do
    // polls for this long before it sleeps on a condition variable.
    static constexpr std::chrono::microseconds spin_time{200};

    template <class Ready>
    static void spin_until(Ready ready) {
        const auto until = std::chrono::steady_clock::now() + spin_time;
        while (!ready()) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            if (std::chrono::steady_clock::now() > until) return;
        }
    }

    void work() {
        for (;;) {
            spin_until([&] {
                return queued_.load(std::memory_order_acquire) != 0 || stopping_.load(std::memory_order_relaxed);
            });
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (stopping_) return;
            }
            take_part(nullptr);
        }
    }

    // Runs one unclaimed part: of `only` (a caller's own call), or of the oldest queued call
    // (nullptr, a worker). Returns false when there was none.
    bool take_part(Call* only) {
        Call* call = nullptr;
        std::size_t part = 0;
        {
            std::lock_guard lock(mutex_);
            if (only != nullptr ? only->claimed == only->parts : queue_.empty()) return false;
            call = only != nullptr ? only : queue_.front();
            part = call->claimed++;
            if (call->claimed == call->parts) {
                queue_.erase(std::find(queue_.begin(), queue_.end(), call));
                queued_.fetch_sub(1, std::memory_order_relaxed);
            }
        }
        std::exception_ptr error;
        inside_task_ = true;
        try {
            (*call->task)(part);
        } catch (...) {
            error = std::current_exception();
        }
        inside_task_ = false;
        std::lock_guard lock(mutex_);
        if (error && !call->error) call->error = error;
        if (call->finished.fetch_add(1, std::memory_order_release) + 1 == call->parts) done_.notify_all();
        return true;
    }

    static inline thread_local bool inside_task_ = false;
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    std::deque<Call*> queue_;             // calls with parts left to claim, oldest first
    std::atomic<std::size_t> queued_{0};  // queue_.size(), for threads spinning without mutex_
    std::atomic<bool> stopping_{false};
};

// Splits [0, count) into at most `threads` contiguous ranges whose boundaries are multiples of
// `grain` and calls body(begin, end) for each, in parallel on the shared pool.
template <class Body>
void parallel_for(std::size_t threads, std::size_t count, std::size_t grain, Body&& body) {
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t units = (count + grain - 1) / grain;
    const std::size_t parts = std::clamp<std::size_t>(threads, 1, std::max<std::size_t>(units, 1));
    if (parts == 1) {
        if (count > 0) body(std::size_t{0}, count);
        return;
    }
    ThreadPool::shared().run(parts, [&](std::size_t part) {
        const std::size_t begin = std::min(count, units * part / parts * grain);
        const std::size_t end = std::min(count, units * (part + 1) / parts * grain);
        if (begin < end) body(begin, end);
    });
}

}  // namespace multibool
