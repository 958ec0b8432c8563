#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <multibool/backends/thread_pool.hpp>

using namespace multibool;

namespace {

// Runs parallel_for and records every range it hands out.
std::vector<std::pair<std::size_t, std::size_t>> ranges_of(std::size_t threads, std::size_t count, std::size_t grain) {
    std::mutex mutex;
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    parallel_for(threads, count, grain, [&](std::size_t begin, std::size_t end) {
        std::lock_guard lock(mutex);
        ranges.emplace_back(begin, end);
    });
    std::sort(ranges.begin(), ranges.end());
    return ranges;
}

}  // namespace

TEST_CASE("parallel_for covers every index once, in grain-aligned ranges", "[backends][threads]") {
    for (std::size_t threads : {1u, 2u, 3u, 8u}) {
        for (std::size_t count : {0u, 1u, 5u, 64u, 1000u, 1001u}) {
            for (std::size_t grain : {1u, 4u, 64u}) {
                CAPTURE(threads, count, grain);
                const auto ranges = ranges_of(threads, count, grain);
                REQUIRE(ranges.size() <= threads);
                std::size_t next = 0;
                for (const auto& [begin, end] : ranges) {
                    REQUIRE(begin == next);
                    REQUIRE(begin < end);
                    REQUIRE(begin % grain == 0);
                    next = end;
                }
                REQUIRE(next == count);
            }
        }
    }
}

TEST_CASE("parallel_for hands out the same ranges on every call", "[backends][threads]") {
    // Results are independent of scheduling because the partition is a function of the arguments.
    const auto first = ranges_of(2, 777, 8);
    for (int repeat = 0; repeat < 20; ++repeat) REQUIRE(ranges_of(2, 777, 8) == first);
}

TEST_CASE("parallel_for passes an exception on to the caller and stays usable", "[backends][threads]") {
    REQUIRE_THROWS_WITH(parallel_for(2, 100, 1,
                                     [](std::size_t begin, std::size_t) {
                                         if (begin != 0) throw std::runtime_error("worker failed");
                                     }),
                        "worker failed");
    std::atomic<std::size_t> sum{0};
    parallel_for(2, 100, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) sum += i;
    });
    REQUIRE(sum == 4950);
}

TEST_CASE("nested and concurrent parallel_for calls complete with every index covered", "[backends][threads]") {
    std::atomic<std::size_t> nested{0};
    parallel_for(2, 10, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            parallel_for(2, 10, 1, [&](std::size_t b, std::size_t e) { nested += e - b; });
        }
    });
    REQUIRE(nested == 100);

    // Four callers at once, each checking that its own call ran every index once: calls queued
    // together never lose, repeat or mix up parts.
    std::atomic<std::size_t> total{0}, expected{0};
    std::atomic<bool> all_exact{true};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c) {
        callers.emplace_back([&, c] {
            for (int repeat = 0; repeat < 200; ++repeat) {
                const std::size_t count = 16 + std::size_t(c) * 8 + std::size_t(repeat % 5);
                expected += count;
                std::vector<std::atomic<int>> seen(count);
                parallel_for(3, count, 1, [&](std::size_t b, std::size_t e) {
                    for (std::size_t i = b; i < e; ++i) seen[i] += 1;
                    total += e - b;
                });
                for (const auto& s : seen) {
                    if (s != 1) all_exact = false;
                }
            }
        });
    }
    for (auto& t : callers) t.join();
    REQUIRE(all_exact);
    REQUIRE(total == expected);
}

// A caller that finds the pool busy with another caller's call used to run all its parts on its
// own thread. Now the workers, once free, take its parts too: here the first call's parts are
// short and the second's long, so the second call's parts run on more than one thread.
TEST_CASE("a second caller shares the pool's workers instead of running alone", "[backends][threads]") {
    ThreadPool pool(3);
    std::atomic<bool> first_started{false};
    std::thread first([&] {
        pool.run(4, [&](std::size_t) {
            first_started = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        });
    });
    while (!first_started) std::this_thread::yield();
    std::mutex mutex;
    std::vector<std::thread::id> threads;
    pool.run(4, [&](std::size_t) {
        {
            std::lock_guard lock(mutex);
            threads.push_back(std::this_thread::get_id());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    });
    first.join();
    REQUIRE(threads.size() == 4);
    std::sort(threads.begin(), threads.end());
    CHECK(std::unique(threads.begin(), threads.end()) - threads.begin() >= 2);
}

TEST_CASE("concurrent callers each get their own exception back", "[backends][threads]") {
    ThreadPool pool(2);
    std::vector<std::thread> callers;
    std::atomic<int> right{0};
    for (int c = 0; c < 3; ++c) {
        callers.emplace_back([&, c] {
            for (int repeat = 0; repeat < 50; ++repeat) {
                try {
                    pool.run(5, [&](std::size_t part) {
                        if (part == std::size_t(c)) throw std::runtime_error(std::to_string(c));
                    });
                } catch (const std::runtime_error& e) {
                    if (e.what() == std::to_string(c)) ++right;
                }
            }
        });
    }
    for (auto& t : callers) t.join();
    REQUIRE(right == 3 * 50);
}
