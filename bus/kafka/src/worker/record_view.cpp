#include "record_view.hpp"

#include <string>

#include "kbus/envelope.hpp"

namespace kbus::kafka::worker {

InboundRecord ViewRecord(const rd_kafka_message_t* m, std::vector<HeaderView>& headers) {
  headers.clear();
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0; ++i) {
      headers.push_back({name, value ? std::string_view(static_cast<const char*>(value), size)
                                     : std::string_view()});
    }
  }
  InboundRecord r;
  r.topic = rd_kafka_topic_name(m->rkt);
  r.partition = m->partition;
  r.offset = m->offset;
  rd_kafka_timestamp_type_t type;
  r.timestamp_ms = rd_kafka_message_timestamp(m, &type);
  if (m->key != nullptr) r.key = {static_cast<const char*>(m->key), m->key_len};
  if (m->payload != nullptr) r.payload = {static_cast<const char*>(m->payload), m->len};
  r.headers = headers;
  return r;
}

std::string_view MessageId(const InboundRecord& r) {
  return r.FindHeader(header::kId).value_or(std::string_view());
}

std::optional<std::string_view> HeaderOf(const rd_kafka_message_t& m, std::string_view name) {
  rd_kafka_headers_t* hdrs = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_message_headers(&m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(hdrs, std::string(name).c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr) {
    return std::nullopt;
  }
  return std::string_view(static_cast<const char*>(value), size);
}

std::optional<std::int64_t> ParseInt(std::optional<std::string_view> text) {
  if (!text || text->empty() || text->size() > 19) return std::nullopt;
  std::int64_t v = 0;
  for (char c : *text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::int64_t EpochMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace kbus::kafka::worker
