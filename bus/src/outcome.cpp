#include "kbus/outcome.hpp"

#include "kbus/dead_letter.hpp"

namespace kbus {

Outcome Ack() { return Outcome(Outcome::Kind::kAck, std::chrono::milliseconds(0), {}, {}); }

Outcome Retry(std::chrono::milliseconds after, std::string error) {
  return Outcome(Outcome::Kind::kRetry, after, reason::kHandlerError, std::move(error));
}

Outcome DeadLetter(std::string error) {
  return Outcome(Outcome::Kind::kDeadLetter, std::chrono::milliseconds(0), reason::kRejected,
                 std::move(error));
}

Outcome Outcome::DeadLetterFor(std::string_view reason, std::string error) {
  return Outcome(Kind::kDeadLetter, std::chrono::milliseconds(0), reason, std::move(error));
}

}  // namespace kbus
