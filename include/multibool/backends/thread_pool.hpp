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
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace multibool {

class ThreadPool {
public:
    // workers: threads started besides the caller, which always takes part.
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
    // first exception a part threw. Runs everything on the caller when called from inside a task or
    // while another caller holds the pool: the partition, hence the result, stays the same.
    void run(std::size_t parts, const std::function<void(std::size_t)>& task) {
        std::unique_lock call(call_mutex_, std::try_to_lock);
        if (parts <= 1 || threads_.empty() || inside_task_ || !call.owns_lock()) {
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
        {
            std::lock_guard lock(mutex_);
            task_ = &task;
            parts_ = parts;
            next_part_.store(0);
            finished_ = 0;
            error_ = nullptr;
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        take_parts();
        // Also waits for workers still inside take_parts, so none can claim a part of the next call.
        const auto done = [&] { return finished_ == parts_ && active_ == 0; };
        spin_until(done);
        std::unique_lock lock(mutex_);
        done_.wait(lock, done);
        task_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
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
        std::size_t seen = 0;
        for (;;) {
            spin_until([&] {
                return generation_.load(std::memory_order_acquire) != seen || stopping_.load(std::memory_order_relaxed);
            });
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
                if (stopping_) return;
                seen = generation_;
                ++active_;
            }
            take_parts();
            std::lock_guard lock(mutex_);
            if (--active_ == 0) done_.notify_one();
        }
    }

    void take_parts() {
        inside_task_ = true;
        for (std::size_t p; (p = next_part_.fetch_add(1)) < parts_;) {
            std::exception_ptr error;
            try {
                (*task_)(p);
            } catch (...) {
                error = std::current_exception();
            }
            std::lock_guard lock(mutex_);
            if (error && !error_) error_ = error;
            if (++finished_ == parts_) done_.notify_one();
        }
        inside_task_ = false;
    }

    static inline thread_local bool inside_task_ = false;
    std::vector<std::thread> threads_;
    std::mutex call_mutex_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(std::size_t)>* task_ = nullptr;
    std::size_t parts_ = 0;
    std::atomic<std::size_t> next_part_{0};
    // Written under mutex_; atomic because spinning threads also read them without it.
    std::atomic<std::size_t> finished_{0};
    std::atomic<std::size_t> active_{0};
    std::atomic<std::size_t> generation_{0};
    std::atomic<bool> stopping_{false};
    std::exception_ptr error_;
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
