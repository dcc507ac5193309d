#pragma once
// The two ends of kbus-bench's latency mode (bench/latency.cpp): the Sender writes command i
// with its send time in created_at, the Receiver reads the replies and keeps each one's arrival
// minus that time. Both are plain librdkafka clients (raw_client.hpp), the same for both sides.

#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "encode_video.hpp"
#include "kbus/context.hpp"
#include "raw_client.hpp"

namespace bench::latency {

using namespace std::chrono_literals;

// In ns. Sender and receiver are one process, so one clock and no skew.
inline std::int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The index in "job-0000000042"; -1 for anything else.
inline std::int64_t IndexOf(std::string_view id) {
  if (id.size() < 5 || id.substr(0, 4) != "job-") return -1;
  std::int64_t i = -1;
  const auto [end, ec] = std::from_chars(id.data() + 4, id.data() + id.size(), i);
  return ec == std::errc() && end == id.data() + id.size() ? i : -1;
}

// Sends command i with its send time. Thread safety: one thread.
class Sender {
 public:
  explicit Sender(const std::string& brokers) {
    raw::RdConfPtr conf = raw::Conf({{"bootstrap.servers", brokers},
                                     {"client.id", "kbus-bench-sender"},
                                     {"linger.ms", "0"},
                                     {"acks", "1"},
                                     {"enable.idempotence", "false"},
                                     {"partitioner", "murmur2_random"}});
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Sender::Delivered);
    rk_ = raw::NewClient(RD_KAFKA_PRODUCER, conf);
  }
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  rd_kafka_t* handle() const { return rk_.get(); }

  // Learns the topic's partitions and leaders now (raw::LearnTopic), so that command 0 does not
  // wait for them.
  void Prepare(const std::string& topic) { raw::LearnTopic(rk_.get(), topic); }

  void Send(const std::string& topic, std::size_t i) {
    EncodeVideo v = MakeVideo(i);
    v.created_at = SteadyNs();
    raw::Produce(rk_.get(), kbus::BuildRecord(v, kbus::SendOptions{.topic = topic, .key = v.id}),
                 RD_KAFKA_PARTITION_UA);
    rd_kafka_poll(rk_.get(), 0);
  }

  // One {"probe":true} record to each partition of `topic`, so that a reader can tell it reads.
  void Probe(const std::string& topic, int partitions) {
    raw::LearnTopic(rk_.get(), topic);
    for (int p = 0; p < partitions; ++p) raw::Produce(rk_.get(), topic.c_str(), p, "probe", R"({"probe":true})");
    Flush();
  }

  void Flush() { raw::Flush(rk_.get(), 30s); }
  std::uint64_t errors() const { return errors_; }

 private:
  static void Delivered(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept {
    if (m->err) ++static_cast<Sender*>(opaque)->errors_;
  }

  raw::RdKafkaPtr rk_;
  std::uint64_t errors_ = 0;  // served on the sender's thread (rd_kafka_poll, rd_kafka_flush)
};

// Reads the output topic on its own thread and records each reply's latency by command index.
class Receiver {
 public:
  // `fetch_wait`: fetch.wait.max.ms. A real broker answers a waiting fetch as soon as data
  // arrives, so a long wait costs nothing there, while a short one makes the broker answer
  // hundreds of empty fetches a second; the embedded broker answers an empty fetch only after
  // the whole wait, so there it must be short.
  Receiver(const std::string& brokers, const std::string& topic, int partitions, std::size_t expected,
           std::chrono::milliseconds fetch_wait)
      : latency_ns_(expected), probed_(static_cast<std::size_t>(partitions)) {
    for (auto& l : latency_ns_) l.store(-1, std::memory_order_relaxed);
    rk_ = raw::NewClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", brokers},
                                             {"client.id", "kbus-bench-receiver"},
                                             {"group.id", "kbus-bench-receiver"},  // never joined
                                             {"enable.auto.commit", "false"},
                                             {"fetch.wait.max.ms", raw::Ms(fetch_wait)}});
    raw::Assign(rk_.get(), topic, partitions, RD_KAFKA_OFFSET_BEGINNING);
    thread_ = std::thread([this] { Loop(); });
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  ~Receiver() { Stop(); }

  // Closes and destroys the consumer: before its topic is deleted (see RunPass).
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    thread_.join();
    raw::Close(rk_.get());
    rk_.reset();
  }

  // Whether it read a probe (Sender::Probe) from every partition: it fetches.
  bool reading() const {
    return std::all_of(probed_.begin(), probed_.end(), [](const auto& p) { return p.load(); });
  }
  std::size_t received() const { return received_.load(); }
  bool Has(std::size_t i) const { return latency_ns_[i].load() >= 0; }
  // Call after Stop(). -1: never arrived.
  std::int64_t LatencyNs(std::size_t i) const { return latency_ns_[i].load(); }
  std::size_t duplicates() const { return duplicates_.load(); }
  std::size_t foreign() const { return foreign_.load(); }

 private:
  void Loop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      raw::RdMessagePtr m(rd_kafka_consumer_poll(rk_.get(), 20));
      if (!m) continue;
      const std::int64_t now = SteadyNs();
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) ++foreign_;
        continue;
      }
      rapidjson::Document doc;
      doc.Parse(static_cast<const char*>(m->payload), m->len);
      std::int64_t sent = -1, index = -1;
      if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("probe") && m->partition >= 0 &&
          static_cast<std::size_t>(m->partition) < probed_.size()) {
        probed_[static_cast<std::size_t>(m->partition)].store(true);
        continue;
      }
      if (!doc.HasParseError() && doc.IsObject()) {
        const auto id = doc.FindMember("id");
        const auto at = doc.FindMember("created_at");
        if (id != doc.MemberEnd() && id->value.IsString()) {
          index = IndexOf({id->value.GetString(), id->value.GetStringLength()});
        }
        if (at != doc.MemberEnd() && at->value.IsInt64()) sent = at->value.GetInt64();
      }
      if (index < 0 || static_cast<std::size_t>(index) >= latency_ns_.size() || sent < 0) {
        ++foreign_;
      } else if (latency_ns_[static_cast<std::size_t>(index)].exchange(now - sent) >= 0) {
        ++duplicates_;
      } else {
        ++received_;
      }
    }
  }

  std::vector<std::atomic<std::int64_t>> latency_ns_;
  std::vector<std::atomic<bool>> probed_;
  std::atomic<std::size_t> received_{0}, duplicates_{0}, foreign_{0};
  std::atomic<bool> stop_{false};
  raw::RdKafkaPtr rk_;
  std::thread thread_;
};

}  // namespace bench::latency
