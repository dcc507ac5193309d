#pragma once
// How a reader that is not a group worker (kbus dlq, kbus tail) treats a consumer error.
// Private to kbus's own code: it takes librdkafka types.

#include <librdkafka/rdkafka.h>

#include <string>

#include "kbus/log.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka::detail {

// A missing topic or a fatal error ends the read (an Error); anything else is logged and ridden
// out, since librdkafka retries by itself.
inline Status CheckConsumerError(rd_kafka_t* rk, const rd_kafka_message_t& m,
                                 const std::string& topic) {
  if (m.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || m.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
    return Error(ErrorCode::kNotFound,
                 "topic '" + topic + "' does not exist: " + rd_kafka_message_errstr(&m));
  }
  char reason[512];
  if (rd_kafka_fatal_error(rk, reason, sizeof reason) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport, std::string("consumer failed: ") + reason);
  }
  Log(LogLevel::kWarn, "consumer error",
      {{"topic", topic}, {"partition", m.partition}, {"error", rd_kafka_message_errstr(&m)}});
  return Ok();
}

}  // namespace kbus::kafka::detail
