#include "kbus/kafka/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "kbus/log.hpp"
#include "rd_handles.hpp"

namespace kbus::kafka {

bool IsSecretProperty(const std::string& name) {
  static constexpr const char* kMarkers[] = {"password", "secret", "token", "key.pem", "credentials"};
  return std::any_of(std::begin(kMarkers), std::end(kMarkers),
                     [&](const char* m) { return name.find(m) != std::string::npos; });
}

namespace {
Status Invalid(std::string msg) { return Error(ErrorCode::kInvalidArgument, std::move(msg)); }
std::string Ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }
}  // namespace

Status Validate(const WorkerConfig& c) {
  if (c.client.brokers.empty()) return Invalid("--brokers is empty: give host:port[,host:port]");
  if (c.group.empty()) return Invalid("--group is empty: every worker needs a consumer group id");
  if (c.assignment_strategy != "range" && c.assignment_strategy != "roundrobin" &&
      c.assignment_strategy != "cooperative-sticky") {
    return Invalid("--assignment-strategy '" + c.assignment_strategy +
                   "' is unknown: use range, roundrobin or cooperative-sticky");
  }
  if (c.max_deliveries < 1) return Invalid("--max-deliveries must be at least 1");
  if (c.session_timeout < std::chrono::milliseconds(1000)) {
    return Invalid("--session-timeout-ms must be at least 1000");
  }
  if (c.commit_interval <= std::chrono::milliseconds(0)) {
    return Invalid("--commit-interval-ms must be positive");
  }
  if (c.producer_linger && (*c.producer_linger < std::chrono::milliseconds(0) ||
                            *c.producer_linger > std::chrono::milliseconds(1000))) {
    return Invalid("--producer-linger-ms must be between 0 and 1000");
  }
  if (c.retry_backoff_initial < std::chrono::milliseconds(0) ||
      c.retry_backoff_max < c.retry_backoff_initial) {
    return Invalid("retry backoff: initial must be >= 0 and <= max");
  }
  if (c.max_buffered_per_partition < 1) return Invalid("max buffered per partition must be >= 1");
  if (c.stall_warning.count() < 0) return Invalid("stall warning must be >= 0 (0 turns the check off)");
  if (c.handler_threads < 1 || c.handler_threads > 1024) {
    return Invalid("--handler-threads must be between 1 and 1024");
  }
  if (c.visibility_timeout < std::chrono::milliseconds(1)) {
    return Invalid("--visibility-timeout-ms must be positive");
  }
  for (const auto& tier : c.retry_tiers) {
    if (tier < std::chrono::milliseconds(1)) return Invalid("--retry-tier delays must be positive");
  }
  if (c.local_attempts < 1) return Invalid("--local-attempts must be at least 1");
  if (c.http_port < -1 || c.http_port > 65535) {
    return Invalid("--http-port must be a TCP port (1-65535), or 0 for none");
  }
  return Ok();
}

std::string_view OrderingName(Ordering ordering) {
  switch (ordering) {
    case Ordering::kKey: return "key";
    case Ordering::kPartition: return "partition";
    case Ordering::kUnordered: return "unordered";
  }
  return "key";
}

Result<Ordering> ParseOrdering(std::string_view name) {
  if (name == "key") return Ordering::kKey;
  if (name == "partition") return Ordering::kPartition;
  if (name == "unordered") return Ordering::kUnordered;
  return Error(ErrorCode::kInvalidArgument,
               "--ordering '" + std::string(name) + "' is unknown: use key, partition or unordered");
}

std::string RetryTierTopic(std::string_view group, std::chrono::milliseconds delay) {
  std::string label;
  const auto ms = delay.count();
  if (ms % 3600000 == 0) {
    label = std::to_string(ms / 3600000) + "h";
  } else if (ms % 60000 == 0) {
    label = std::to_string(ms / 60000) + "m";
  } else if (ms % 1000 == 0) {
    label = std::to_string(ms / 1000) + "s";
  } else {
    label = std::to_string(ms) + "ms";
  }
  return std::string(group) + ".retry." + label;
}

std::map<std::string, std::string> ProducerProperties(const ProducerConfig& c) {
  return {
      {"bootstrap.servers", c.client.brokers},
      {"client.id", c.client.client_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", Ms(c.linger)},
      // Keys land on the partitions Java clients choose, so mixed fleets agree.
      {"partitioner", "murmur2_random"},
      // Room for a 1 MB payload plus its envelope; the broker's default limit is 1048588.
      {"message.max.bytes", "1048588"},
  };
}

std::map<std::string, std::string> ConsumerProperties(const WorkerConfig& c) {
  return {
      {"bootstrap.servers", c.client.brokers},
      {"client.id", c.client.client_id},
      {"group.id", c.group},
      // kbus commits itself, only what is finished.
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"partition.assignment.strategy", c.assignment_strategy},
      {"session.timeout.ms", Ms(c.session_timeout)},
      {"heartbeat.interval.ms", Ms(std::max<std::chrono::milliseconds>(
                                    std::chrono::milliseconds(100), c.session_timeout / 5))},
      {"fetch.wait.max.ms", Ms(c.fetch_wait_max)},
      {"fetch.message.max.bytes", "1048588"},
      {"allow.auto.create.topics", "true"},
  };
}

std::string DescribeProperties(const std::map<std::string, std::string>& properties) {
  std::ostringstream os;
  for (const auto& [k, v] : properties) {
    os << k << '=';
    if (IsSecretProperty(k)) {
      os << Secret(v);
    } else {
      os << v;
    }
    os << '\n';
  }
  return os.str();
}

namespace detail {

RdConfPtr MakeConf(const std::map<std::string, std::string>& properties) {
  RdConfPtr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : properties) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::invalid_argument("librdkafka property '" + k + "' refused: " + err);
    }
  }
  return conf;
}

namespace {
void LogTrampoline(const rd_kafka_t* rk, int level, const char* fac, const char* buf) noexcept {
  try {
    // syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug.
    const LogLevel l = level <= 3 ? LogLevel::kError
                       : level == 4 ? LogLevel::kWarn
                       : level <= 6 ? LogLevel::kInfo
                                    : LogLevel::kDebug;
    Log(l, buf, {{"component", "librdkafka"}, {"facility", fac}, {"client", rd_kafka_name(rk)}});
  } catch (...) {
  }
}
}  // namespace

void RouteLogs(rd_kafka_conf_t* conf) {
  rd_kafka_conf_set_log_cb(conf, &LogTrampoline);
  char err[256];
  rd_kafka_conf_set(conf, "log.queue", "true", err, sizeof err);
}

void AttachLogQueue(rd_kafka_t* rk) {
  // NULL: the main queue, which the poll calls serve.
  rd_kafka_set_log_queue(rk, nullptr);
}

RdKafkaPtr NewHandle(rd_kafka_type_t type, RdConfPtr& conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (rk == nullptr) throw std::runtime_error(std::string("cannot create Kafka client: ") + err);
  conf.release();  // owned by rk now, only after success
  AttachLogQueue(rk);
  return RdKafkaPtr(rk);
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace detail
}  // namespace kbus::kafka
