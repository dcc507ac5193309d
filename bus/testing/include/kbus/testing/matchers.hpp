#pragma once
// GoogleMock matchers for kbus results: EXPECT_THAT(r, IsOk()), EXPECT_THAT(r, ErrorIs(code)),
// EXPECT_THAT(r, ErrorIs(code, HasSubstr("field 'height'"))).

#include <gmock/gmock.h>

#include "kbus/result.hpp"

namespace kbus::testing {

MATCHER(IsOk, "is ok") {
  if (arg.ok()) return true;
  *result_listener << "error: " << arg.error().ToString();
  return false;
}

MATCHER_P(ErrorIs, code, "fails with " + std::string(kbus::ToString(code))) {
  if (arg.ok()) {
    *result_listener << "is ok";
    return false;
  }
  *result_listener << "error: " << arg.error().ToString();
  return arg.error().code() == code;
}

MATCHER_P2(ErrorIs, code, message_matcher,
           "fails with " + std::string(kbus::ToString(code)) + " and a matching message") {
  if (arg.ok()) {
    *result_listener << "is ok";
    return false;
  }
  *result_listener << "error: " << arg.error().ToString();
  return arg.error().code() == code &&
         ::testing::ExplainMatchResult(message_matcher, arg.error().message(), result_listener);
}

}  // namespace kbus::testing
