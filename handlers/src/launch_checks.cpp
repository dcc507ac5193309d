#include "launch_checks.hpp"

#include <cstdint>

namespace kbus::handlers::detail {

namespace {

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

bool IsTopicChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

std::string Ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

}  // namespace

std::string Shown(std::string_view value, std::size_t max_bytes) {
  std::string out(value.substr(0, max_bytes));
  for (char& c : out) {
    if (IsControl(c)) c = '?';
  }
  if (value.size() > max_bytes) out += "...(" + std::to_string(value.size()) + " bytes)";
  return out;
}

std::string CheckJobId(std::string_view job_id) {
  if (job_id.empty()) return "job_id is empty";
  if (job_id.size() > kMaxJobIdBytes) {
    return "job_id is " + std::to_string(job_id.size()) + " bytes, more than the " +
           std::to_string(kMaxJobIdBytes) + " allowed";
  }
  for (char c : job_id) {
    if (IsControl(c)) return "job_id contains a control character";
  }
  return {};
}

std::string CheckDurations(const LaunchProcess& cmd) {
  if (cmd.run_timeout.count() < 0 || cmd.run_timeout > kMaxRunTimeout) {
    return "run_timeout " + Ms(cmd.run_timeout) + " is out of bounds: 0 (no limit) to " + Ms(kMaxRunTimeout) +
           " (30 days)";
  }
  const auto hb = cmd.heartbeat_interval;
  if (hb.count() != 0 && (hb < kMinHeartbeatInterval || hb > kMaxHeartbeatInterval)) {
    return "heartbeat_interval " + Ms(hb) + " is out of bounds: 0 (the launcher's default) or " +
           Ms(kMinHeartbeatInterval) + " to " + Ms(kMaxHeartbeatInterval);
  }
  return {};
}

bool IsTopicName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTopicNameBytes || name == "." || name == "..") return false;
  for (char c : name) {
    if (!IsTopicChar(c)) return false;
  }
  return true;
}

bool IsTopicPattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > kMaxTopicNameBytes) return false;
  for (char c : pattern) {
    if (c != '*' && !IsTopicChar(c)) return false;
  }
  return true;
}

bool MatchesTopicPattern(std::string_view pattern, std::string_view topic) {
  // Iterative glob with backtracking to the last '*': linear in practice, never recursive.
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < topic.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && pattern[p] == topic[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string CheckReplyTo(std::string_view reply_to, const std::vector<std::string>& allowed) {
  const std::string_view topic = reply_to.empty() ? kLauncherEventsTopic : reply_to;
  if (!IsTopicName(topic)) {
    return "reply_to '" + Shown(topic) + "' is not a Kafka topic name (1 to 249 of [a-zA-Z0-9._-])";
  }
  for (const auto& pattern : allowed) {
    if (MatchesTopicPattern(pattern, topic)) return {};
  }
  std::string list;
  for (const auto& pattern : allowed) list += (list.empty() ? "" : ",") + pattern;
  return "reply_to '" + std::string(topic) + "' is not a topic this launcher may reply to (--reply-topics " +
         Shown(list, 256) + ")";
}

}  // namespace kbus::handlers::detail
