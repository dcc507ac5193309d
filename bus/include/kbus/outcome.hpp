#pragma once
// What a handler tells the bus about one delivery.

#include <chrono>
#include <string>
#include <string_view>

namespace kbus {

class Outcome {
 public:
  enum class Kind { kAck, kRetry, kDeadLetter };

  Kind kind() const { return kind_; }
  std::chrono::milliseconds retry_after() const { return retry_after_; }
  // A stable reason code for dead letters ("rejected", "decode-error", ...); see docs/delivery.md.
  std::string_view reason() const { return reason_; }
  const std::string& error() const { return error_; }

  friend Outcome Ack();
  friend Outcome Retry(std::chrono::milliseconds after, std::string error);
  friend Outcome DeadLetter(std::string error);
  // For kbus's own dispatch code: a dead letter with a specific reason code.
  static Outcome DeadLetterFor(std::string_view reason, std::string error);

 private:
  Outcome(Kind kind, std::chrono::milliseconds after, std::string_view reason, std::string error)
      : kind_(kind), retry_after_(after), reason_(reason), error_(std::move(error)) {}
  Kind kind_;
  std::chrono::milliseconds retry_after_;
  std::string_view reason_;  // always a string literal
  std::string error_;
};

// Done: the message is committed and the handler's outgoing messages are sent.
Outcome Ack();
// Try again later (after `after` at the earliest); outgoing messages are discarded. Bounded by
// the group's max deliveries, after which the message is dead-lettered as "handler-error".
Outcome Retry(std::chrono::milliseconds after = std::chrono::milliseconds(0), std::string error = {});
// Never retry: send the message to the group's dead-letter topic with reason "rejected".
Outcome DeadLetter(std::string error);

}  // namespace kbus
