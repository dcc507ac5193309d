#pragma once
// The instance record: what the host keeps in memory and writes to the state store, one per
// workflow id. Its JSON form is documented in docs/workflows.md ("The state record").

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"
#include "kbus/workflows/workflow.hpp"

namespace kbus::workflows::detail {

inline constexpr std::string_view kRunning = "running";
inline constexpr std::string_view kCompleted = "completed";
inline constexpr std::string_view kFailed = "failed";
// The internal timeout that removes a finished instance after its retention.
inline constexpr std::string_view kExpireTimeout = "kbus.expire";
// The internal timeout that drops a completed run's result from its record when the result
// expires before the record does (result_retention < completed_retention).
inline constexpr std::string_view kResultExpireTimeout = "kbus.result-expire";

// The record that started the run, kept to dead-letter it if the run fails.
struct Origin {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::int64_t timestamp_ms = -1;
  std::string key;
  std::string payload;
  std::vector<Header> headers;
};

struct Instance {
  std::string workflow;  // the workflow's name
  std::string id;
  int schema = 1;
  std::uint64_t version = 0;
  int run = 1;
  std::string status{kRunning};
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::int64_t finished_ms = 0;
  std::string correlation_id;
  std::deque<std::string> processed;  // newest last
  std::string last_message;           // whose outgoing messages `outbox` holds
  std::vector<OutgoingRecord> outbox;
  std::vector<Timeout> timeouts;
  std::optional<Origin> origin;
  std::string state_json;
  // The result the run recorded (compact JSON), "" for none; served until result_expires_ms
  // (Unix epoch ms, 0 with no result).
  std::string result_json;
  std::int64_t result_expires_ms = 0;

  bool finished() const { return status != kRunning; }
  bool Processed(std::string_view message_id) const;
  void Remember(std::string message_id, std::size_t bound);
};

// The message that fires a timeout, sent into the input topic keyed by its workflow id (the
// workflow id itself travels in the kbus-workflow-id header).
struct TimeoutMessage {
  std::string timeout_id;
  std::string name;
  std::int64_t due_ms = 0;
};

std::string Encode(const Instance& instance);
Result<Instance> Decode(std::string_view text);

}  // namespace kbus::workflows::detail

template <>
struct kbus::JsonTraits<kbus::workflows::detail::TimeoutMessage> {
  using T = kbus::workflows::detail::TimeoutMessage;
  static constexpr auto kFields = kbus::Fields(kbus::Field("timeout_id", &T::timeout_id),
                                               kbus::Field("name", &T::name, kbus::kOptional),
                                               kbus::Field("due_ms", &T::due_ms, kbus::kOptional));
};
