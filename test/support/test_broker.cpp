#include "test_broker.hpp"

#include <librdkafka/rdkafka.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include "kbus/kafka/admin.hpp"

namespace kbus::test {

namespace {
std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}
}  // namespace

TestBroker& TestBroker::Get() {
  static TestBroker broker;
  return broker;
}

TestBroker::TestBroker() {
  if (const char* file = std::getenv("KBUS_TEST_BROKERS_FILE"); file != nullptr && *file != '\0') {
    std::ifstream in(file);
    std::string line;
    if (!std::getline(in, line) || Trim(line).empty()) {
      throw std::runtime_error(std::string("KBUS_TEST_BROKERS_FILE=") + file +
                               " has no bootstrap address: did the kafka_broker fixture start?");
    }
    bootstrap_ = Trim(line);
  } else if (const char* brokers = std::getenv("KBUS_TEST_BROKERS"); brokers && *brokers) {
    bootstrap_ = brokers;
  } else {
    embedded_ = std::make_unique<kafka::EmbeddedBroker>();
    bootstrap_ = embedded_->bootstrap();
  }
}

void TestBroker::CreateTopic(const std::string& name, int partitions) {
  if (embedded_) {
    if (Status s = embedded_->CreateTopic(name, partitions); !s.ok()) {
      throw std::runtime_error(s.error().ToString());
    }
  } else {
    kafka::ClientConfig client;
    client.brokers = bootstrap_;
    if (Status s = kafka::CreateTopics(client, {{name, partitions}}); !s.ok()) {
      throw std::runtime_error(s.error().ToString());
    }
  }
  // Wait until metadata shows the topic with all partitions (Kafka creates them asynchronously).
  kafka::ClientConfig client;
  client.brokers = bootstrap_;
  const bool ready = WaitFor(
      [&] {
        auto topics = kafka::ListTopics(client);
        if (!topics.ok()) return false;
        for (const auto& t : *topics) {
          if (t.name == name && t.partitions == partitions) return true;
        }
        return false;
      },
      std::chrono::seconds(30));
  if (!ready) throw std::runtime_error("topic " + name + " did not appear in metadata");
}

std::string TestBroker::UniqueName(const std::string& prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  return prefix + "-" + std::to_string(rng() % 1000000000);
}

std::optional<std::string> ReadRecord::FindHeader(const std::string& name) const {
  std::optional<std::string> found;
  for (const auto& h : headers) {
    if (h.name == name) found = h.value;
  }
  return found;
}

std::vector<ReadRecord> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                  std::size_t count, std::chrono::milliseconds timeout) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](const char* k, const char* v) {
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(err);
    }
  };
  set("bootstrap.servers", bootstrap.c_str());
  set("group.id", "kbus-test-reader");  // required by the API; never joined (assign, no commit)
  set("enable.auto.commit", "false");
  set("fetch.wait.max.ms", "10");
  set("log_level", "3");
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  rd_kafka_poll_set_consumer(rk);
  std::vector<ReadRecord> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Partition count from metadata (the topic may be auto-created by the first send).
  int partitions = 0;
  while (partitions == 0 && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && md->topics[0].err == 0) partitions = md->topics[0].partition_cnt;
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    if (partitions == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (!m->err) {
      ReadRecord r;
      r.topic = rd_kafka_topic_name(m->rkt);
      r.partition = m->partition;
      r.offset = m->offset;
      if (m->key) r.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.payload.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == 0) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0; ++i) {
          r.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : ""});
        }
      }
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

}  // namespace kbus::test
