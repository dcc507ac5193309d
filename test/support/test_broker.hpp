#pragma once
// The broker an integration test runs against. ctest runs each integration test twice: on the
// embedded broker (started inside the test process) and on real Apache Kafka (started once by the
// kafka_broker fixture; its address is in the file named by KBUS_TEST_BROKERS_FILE).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/record.hpp"

namespace kbus::test {

class TestBroker {
 public:
  // The process-wide broker: real Kafka when KBUS_TEST_BROKERS_FILE (or KBUS_TEST_BROKERS) is
  // set, otherwise an embedded broker started on first use.
  static TestBroker& Get();

  const std::string& bootstrap() const { return bootstrap_; }
  bool embedded() const { return embedded_ != nullptr; }
  kafka::EmbeddedBroker* embedded_broker() const { return embedded_.get(); }

  // Creates a topic (mock API on the embedded broker, admin API on Kafka) and waits until its
  // metadata shows every partition. Aborts the test binary's current test on failure.
  void CreateTopic(const std::string& name, int partitions);

  // A name no other test run has used: prefix + random suffix.
  static std::string UniqueName(const std::string& prefix);

 private:
  TestBroker();
  std::unique_ptr<kafka::EmbeddedBroker> embedded_;
  std::string bootstrap_;
};

// A consumed record with owned data.
struct ReadRecord {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::string key;
  std::string payload;
  std::vector<Header> headers;
  std::optional<std::string> FindHeader(const std::string& name) const;
};

// Reads a topic from the beginning of every partition, without a consumer group, until `count`
// records arrived or `timeout` passed. Returns what it read.
std::vector<ReadRecord> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                  std::size_t count,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Polls `done` every 10 ms until it is true or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& done,
             std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace kbus::test
