#pragma once
// How kbus tail and kbus dlq show print a record's payload: embedded as JSON when it is JSON
// within kbus's rules (valid UTF-8, at most kMaxJsonDepth levels deep: json.hpp), else as a
// string of its first kMaxShownPayloadBytes with a note saying why. A record a broker holds may
// be anything; a tool shows it rather than fails on it.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kbus::cli {

// The most payload bytes a tool prints of a payload it cannot show as JSON.
inline constexpr std::size_t kMaxShownPayloadBytes = 64 * 1024;

struct PayloadView {
  std::string json;  // one compact JSON value: the payload itself, a string, or null
  std::string note;  // why the payload is shown as a string; empty when it is not
};

// `payload` nullopt: a record without a value (null).
PayloadView ViewPayload(std::optional<std::string_view> payload);

}  // namespace kbus::cli
