#pragma once
// Dispatcher: turns one consumed record into a decision. It reads the envelope, finds the
// handler, decodes the payload, runs the handler, and reports what the transport must do:
// commit, retry, dead-letter or skip, with the handler's outgoing messages when it succeeded.
// It does no I/O, so every transport (Kafka, in-memory) shares exactly this logic.
//
// Thread safety: Dispatch is const and may run on several threads at once.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

// DispatchResult::reason is one of reason::*, defined with the dead-letter records the transport
// builds from a result. Code that builds those records (MakeDeadLetter, MakeRetry) includes
// kbus/dead_letter.hpp itself rather than relying on this include.
#include "kbus/dead_letter.hpp"
#include "kbus/handler_registry.hpp"
#include "kbus/record.hpp"

namespace kbus {

struct DispatchResult {
  enum class Kind {
    kAck,         // commit; send `outgoing` first
    kRetry,       // deliver again after `retry_after`
    kDeadLetter,  // send to the dead-letter topic with `reason` and `error`
    kSkip,        // not for this group (an event type nobody here handles): commit
  };
  Kind kind = Kind::kAck;
  std::string_view reason;  // for kDeadLetter: one of reason::*, or Outcome::DeadLetterFor's
  std::string error;        // for kRetry and kDeadLetter
  std::chrono::milliseconds retry_after{0};
  std::string_view type;  // the kbus-type header, if any
  std::vector<OutgoingRecord> outgoing;
  // For kAck: records to be acknowledged before `outgoing` is sent, and what to tell the handler
  // about them (Context::WriteAhead).
  std::vector<OutgoingRecord> write_ahead;
  std::function<void(const Status&)> verdict;
};

class Dispatcher {
 public:
  explicit Dispatcher(const HandlerRegistry& registry) : registry_(registry) {}

  // `attempt` is 1 for the first delivery of this record. `visibility`, if given, is what the
  // handler's Context reports as its deadline and cancellation; `slot`, the slot taken for it
  // (Context::KeepSlot).
  DispatchResult Dispatch(const InboundRecord& record, int attempt,
                          Visibility* visibility = nullptr, SlotHold* slot = nullptr) const;

 private:
  const HandlerRegistry& registry_;
};

}  // namespace kbus
