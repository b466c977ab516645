// The apps' --devices and --split flags (apps/common/placement_flags.cpp): bad lists are named.
#include <doctest/doctest.h>

#include "apps/common/placement_flags.h"
#include "runtime/core/error.h"

using namespace ternvk;

TEST_CASE("--devices and --split: lists, all/auto, and clear errors") {
  CHECK_THROWS_WITH_AS(parse_split("1,x"), doctest::Contains("not a whole number"), Error);
  CHECK_THROWS_WITH_AS(parse_split(","), doctest::Contains("--split"), Error);
  CHECK_THROWS_WITH_AS(parse_device_list("0,7", 1), doctest::Contains("device 7 does not exist"), Error);
  CHECK_THROWS_WITH_AS(parse_device_list("-1", 2), doctest::Contains("device -1 does not exist"), Error);
  CHECK(parse_device_list("all", 2) == std::vector<int>{0, 1});
  CHECK(parse_device_list("1,1,0", 2) == std::vector<int>{1, 1, 0});
  CHECK(parse_split("auto").empty());
  CHECK(parse_split("12,18") == std::vector<int>{12, 18});
}
