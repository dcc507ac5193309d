#pragma once
// What the launcher checks in a command before it runs anything (docs/launcher.md, "What is
// refused"), and the bound on what it copies from a command into logs and error texts. Each
// check returns "" when the value is fine, else why, naming the field.
//
// Thread safety: pure functions.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handlers/launcher_messages.hpp"

namespace kbus::handlers::detail {

// A value taken from a message, cut to a length a log line or an error text can carry (with
// how long it was), control characters shown as '?'. Applied before any log of ours; the
// logger's own cap, if any, applies on top.
std::string Shown(std::string_view value, std::size_t max_bytes = 128);

// job_id: not empty, at most kMaxJobIdBytes, no control characters (bytes below 0x20 and 0x7f).
std::string CheckJobId(std::string_view job_id);

// run_timeout and heartbeat_interval within the bounds of launcher_messages.hpp.
std::string CheckDurations(const LaunchProcess& cmd);

// 1 to 249 characters of [a-zA-Z0-9._-], as Kafka requires, and not "." or "..".
bool IsTopicName(std::string_view name);

// A reply-topics entry: a topic name in which '*' matches any run of characters.
bool IsTopicPattern(std::string_view pattern);
bool MatchesTopicPattern(std::string_view pattern, std::string_view topic);

// reply_to (empty: kLauncherEventsTopic) is a valid topic name that one of `allowed` matches.
std::string CheckReplyTo(std::string_view reply_to, const std::vector<std::string>& allowed);

}  // namespace kbus::handlers::detail
