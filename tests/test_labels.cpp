#include <mlnc/labels.hpp>

#include <catch2/catch.hpp>

TEST_CASE("placeholder build check") { REQUIRE(mlnc::label_sets::from_lists({{0}}, 2).size() == 1); }
