#include "record.hpp"

#include <algorithm>

#include "kbus/codec.hpp"
#include "kbus/json.hpp"

namespace kbus::workflows::detail {

bool Instance::Processed(std::string_view message_id) const {
  return std::find(processed.begin(), processed.end(), message_id) != processed.end();
}

void Instance::Remember(std::string message_id, std::size_t bound) {
  processed.push_back(std::move(message_id));
  while (processed.size() > std::max<std::size_t>(bound, 1)) processed.pop_front();
}

}  // namespace kbus::workflows::detail

// The record's members in the order they are written (the order of docs/workflows.md, "The
// state record"): a reader finds each at its cursor. These JSON forms are the record's own, so
// they live here, the only file that writes these types as JSON. An outbox record keeps
// neither its partition nor its tombstone flag: what a step sends has neither (as before).
template <>
struct kbus::JsonTraits<kbus::OutgoingRecord> {
  static constexpr auto kFields = Fields(Field("topic", &OutgoingRecord::topic), Field("key", &OutgoingRecord::key),
                                         Field("payload", &OutgoingRecord::payload),
                                         Field("headers", &OutgoingRecord::headers));
};

template <>
struct kbus::JsonTraits<kbus::workflows::Timeout> {
  using T = workflows::Timeout;
  static constexpr auto kFields = Fields(Field("id", &T::id), Field("name", &T::name), Field("due_ms", &T::due_ms),
                                         Field("payload", &T::payload));
};

template <>
struct kbus::JsonTraits<kbus::workflows::detail::Origin> {
  using T = workflows::detail::Origin;
  static constexpr auto kFields =
      Fields(Field("topic", &T::topic), Field("partition", &T::partition), Field("offset", &T::offset),
             Field("timestamp_ms", &T::timestamp_ms), Field("key", &T::key), Field("payload", &T::payload),
             Field("headers", &T::headers));
};

template <>
struct kbus::JsonTraits<kbus::workflows::detail::Instance> {
  using T = workflows::detail::Instance;
  static constexpr auto kFields = Fields(
      Field("workflow", &T::workflow), Field("id", &T::id), Field("schema", &T::schema),
      Field("version", &T::version), Field("run", &T::run), Field("status", &T::status),
      Field("created_ms", &T::created_ms), Field("updated_ms", &T::updated_ms), Field("finished_ms", &T::finished_ms),
      Field("correlation_id", &T::correlation_id), Field("processed", &T::processed),
      Field("last_message", &T::last_message), Field("outbox", &T::outbox), Field("timeouts", &T::timeouts),
      Field("origin", &T::origin, kOptional),  // left out while there is none
      RawJsonField("state", &T::state_json),
      // Left out without a result, so records of runs without one (and of older kbus) stay as
      // they were; the console reads both shapes.
      RawJsonField("result", &T::result_json, kOmitDefault),
      Field("result_expires_ms", &T::result_expires_ms, kOmitDefault));
};

namespace kbus::workflows::detail {

std::string Encode(const Instance& in) {
  // Strings that are not UTF-8 (a header of a foreign producer, copied into `origin`) are
  // written with U+FFFD for each bad byte, as before the field lists: the record must be
  // written. State that is not one JSON value cannot be, and is written as null (with the
  // members after it left out); the signature has no room for that error.
  JsonWriter w(InvalidUtf8::kReplace);
  WriteJson(in, w);
  return w.Take();
}

Result<Instance> Decode(std::string_view text) {
  JsonDocument doc;
  if (Status s = doc.Parse(text); !s.ok()) return s.error();
  if (!doc.Root().IsObject()) {
    return Error(ErrorCode::kDecode, "a workflow state record must be a JSON object");
  }
  Result<Instance> in = FromJsonValue<Instance>(doc.Root());
  if (!in.ok()) return Error(ErrorCode::kDecode, "workflow state record: " + in.error().message());
  if (in->status != kRunning && in->status != kCompleted && in->status != kFailed) {
    return Error(ErrorCode::kDecode, "workflow state record: field 'status' has the wrong type or value: expected "
                                     "running, completed or failed, got '" + ToValidUtf8(in->status, 64) + "'");
  }
  // A record without a result has no expiry for it, whatever it says.
  if (in->result_json.empty()) in->result_expires_ms = 0;
  return in;
}

}  // namespace kbus::workflows::detail
