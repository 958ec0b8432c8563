#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <stdexcept>
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

    // Two callers at once: the second runs on its own thread rather than waiting or interleaving.
    std::atomic<std::size_t> total{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 2; ++c) {
        callers.emplace_back([&] {
            for (int repeat = 0; repeat < 200; ++repeat) {
                parallel_for(2, 64, 1, [&](std::size_t b, std::size_t e) { total += e - b; });
            }
        });
    }
    for (auto& t : callers) t.join();
    REQUIRE(total == 2 * 200 * 64);
}
