// Schedule (training/schedule.hpp): the multiplier at the first step, mid-run and the last step of
// each shape, with and without warm-up, against hand-worked values; and the setters a schedule
// drives (AdamW, ScaleAdamW, both flip policies) refuse what their constructors refuse.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>

#include "multibool/core/bit_plane_matrix.hpp"
#include "multibool/training/adamw.hpp"
#include "multibool/training/bold_policy.hpp"
#include "multibool/training/expected_improvement_policy.hpp"
#include "multibool/training/scale_adamw.hpp"
#include "multibool/training/schedule.hpp"

using namespace multibool;

TEST_CASE("a constant schedule is 1 on every step, and warm-up rises linearly first", "[training][schedule]") {
    const Schedule constant;
    for (std::size_t step : {0u, 1u, 499u, 999u, 5000u}) CHECK(constant.factor(step, 1000) == 1.0);
    const Schedule warm{ScheduleShape::constant, 4};
    CHECK(warm.factor(0, 100) == 0.25);
    CHECK(warm.factor(1, 100) == 0.5);
    CHECK(warm.factor(3, 100) == 1.0);
    CHECK(warm.factor(4, 100) == 1.0);
    CHECK(warm.factor(99, 100) == 1.0);
}

TEST_CASE("linear and cosine decay: 1 at the start, 1/2 half-way, near 0 on the last step", "[training][schedule]") {
    const std::size_t planned = 1000;
    const Schedule linear{ScheduleShape::linear, 0};
    CHECK(linear.factor(0, planned) == 1.0);
    CHECK(linear.factor(500, planned) == 0.5);
    CHECK(linear.factor(999, planned) == Approx(0.001).epsilon(1e-12));
    CHECK(linear.factor(1000, planned) == 0.0);  // past the plan: no movement
    const Schedule cosine{ScheduleShape::cosine, 0};
    CHECK(cosine.factor(0, planned) == 1.0);
    CHECK(cosine.factor(500, planned) == Approx(0.5).epsilon(1e-15));
    CHECK(cosine.factor(250, planned) == Approx(0.5 * (1 + std::cos(std::numbers::pi / 4))).epsilon(1e-15));
    // (1 + cos(pi * 999/1000)) / 2 = sin^2(pi / 2000)
    const double last = std::pow(std::sin(std::numbers::pi / 2000), 2);
    CHECK(cosine.factor(999, planned) == Approx(last).epsilon(1e-9));
    CHECK(cosine.factor(999, planned) > 0.0);
}

TEST_CASE("after a warm-up the decay runs over the remaining steps", "[training][schedule]") {
    // 10 warm-up steps of 110: the decay covers steps 10..109 as a 100-step run would.
    const Schedule cosine{ScheduleShape::cosine, 10};
    const Schedule plain{ScheduleShape::cosine, 0};
    CHECK(cosine.factor(0, 110) == 0.1);
    CHECK(cosine.factor(9, 110) == 1.0);
    for (std::size_t s : {10u, 35u, 60u, 109u}) CHECK(cosine.factor(s, 110) == plain.factor(s - 10, 100));
    const Schedule linear{ScheduleShape::linear, 10};
    CHECK(linear.factor(60, 110) == 0.5);
    // A warm-up as long as the run never decays.
    CHECK(Schedule{ScheduleShape::linear, 50}.factor(49, 50) == 1.0);
}

TEST_CASE("schedule shapes parse by name and print back", "[training][schedule]") {
    for (auto shape : {ScheduleShape::constant, ScheduleShape::linear, ScheduleShape::cosine}) {
        CHECK(parse_schedule_shape(schedule_shape_name(shape)) == shape);
    }
    CHECK_FALSE(parse_schedule_shape("exponential").has_value());
    CHECK_FALSE(parse_schedule_shape("").has_value());
}

TEST_CASE("the setters a schedule drives refuse negative and non-finite values", "[training][schedule]") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    AdamW adam(4, {1e-3f});
    adam.set_learning_rate(0.5f);
    CHECK(adam.options().learning_rate == 0.5f);
    CHECK_THROWS_AS(adam.set_learning_rate(-1.0f), std::invalid_argument);
    CHECK_THROWS_AS(adam.set_learning_rate(nan), std::invalid_argument);
    CHECK(adam.options().learning_rate == 0.5f);  // a refused value changes nothing

    ScaleAdamW<2> scales(3, 2, {1e-3f});
    scales.set_learning_rate(0.0f);
    CHECK(scales.options().learning_rate == 0.0f);
    CHECK_THROWS_AS(scales.set_learning_rate(std::numeric_limits<float>::infinity()), std::invalid_argument);

    BoldPolicy<float> bold(2, 3, 64, BoldOptions{1.0});
    bold.set_eta(0.25);
    CHECK(bold.options().eta == 0.25);
    CHECK_THROWS_AS(bold.set_eta(-0.1), std::invalid_argument);
    CHECK_THROWS_AS(bold.set_eta(double(nan)), std::invalid_argument);
    CHECK(bold.options().eta == 0.25);

    ExpectedImprovementPolicy expected;
    expected.set_eta(3e-5);
    CHECK(expected.options().eta == 3e-5);
    CHECK_THROWS_AS(expected.set_eta(-1.0), std::invalid_argument);
}
