#pragma once
// Running a workflow on Kafka: the state store over a compacted topic, the worker wiring, and
// the topics a workflow needs. Header-only, for programs that link kbus::workflows and
// kbus::kafka (the workflow library itself never links Kafka).
//
//   kafka::StateTopic state(config.client, workflow.options().state_topic);
//   KafkaStateStore store(state);
//   kafka::Producer producer(...);
//   WorkflowHost host(workflow, {.group = config.group, .send = SendWith(producer)}, store);
//   HandlerRegistry handlers;
//   host.Register(handlers);
//   Attach(host, config);          // subscribes the input topic, loads state on assignment
//   kafka::Worker worker(config, handlers);
//   host.Start();                  // fires timeouts
//   worker.Run();

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/config.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/state_topic.hpp"
#include "kbus/log.hpp"
#include "kbus/workflows/host.hpp"

namespace kbus::workflows {

class KafkaStateStore final : public StateStore {
 public:
  explicit KafkaStateStore(kafka::StateTopic& topic) : topic_(topic) {}

  Status Load(std::int32_t partition,
              const std::function<void(std::string_view, std::string_view)>& each) override {
    return topic_.Load(partition, [&](std::string_view key, std::string_view value, std::int64_t) { each(key, value); });
  }
  Status Write(std::int32_t partition, std::string_view key, std::string_view value) override {
    return topic_.Write(partition, key, value);
  }
  Status Erase(std::int32_t partition, std::string_view key) override { return topic_.Erase(partition, key); }
  // Steps hand their state record to the worker's producer, which sends it without a thread
  // waiting; Write stays for writes outside a step.
  std::optional<OutgoingRecord> WriteAheadRecord(std::int32_t partition, std::string_view key,
                                                 std::string_view value) override {
    OutgoingRecord r;
    r.topic = topic_.name();
    r.key = std::string(key);
    r.payload = std::string(value);
    r.partition = partition;
    return r;
  }

 private:
  kafka::StateTopic& topic_;
};

// Timeout firings through a producer, acknowledged before the timer counts as fired.
inline std::function<Status(const OutgoingRecord&)> SendWith(kafka::Producer& producer) {
  return [&producer](const OutgoingRecord& r) { return producer.SendSync(r); };
}

// Both topics, when they exist, must have the same number of partitions: a state record is
// written to the partition number of its input. An error names both counts; a topic not there
// yet (to be auto-created) is not one.
inline Status CheckCoPartitioned(const kafka::ClientConfig& client, const WorkflowHost& host) {
  auto topics = kafka::ListTopics(client);
  if (!topics.ok()) return topics.error();
  int input = 0, state = 0;
  for (const auto& t : *topics) {
    if (t.name == host.input_topic()) input = t.partitions;
    if (t.name == host.state_topic()) state = t.partitions;
  }
  if (input > 0 && state > 0 && input != state) {
    return Error(ErrorCode::kInvalidArgument,
                 "workflow topics are not co-partitioned: " + host.input_topic() + " has " + std::to_string(input) +
                     " partitions and " + host.state_topic() + " has " + std::to_string(state) +
                     "; give the state topic the input topic's count");
  }
  return Ok();
}

// The worker's producer linger once a workflow is attached: a step's state record and its
// messages all leave through it, and fuller requests carried about twice the steps of the
// worker's 1 ms (kbus-workflow-bench, docs/workflows.md "What it costs").
inline constexpr std::chrono::milliseconds kWorkflowProducerLinger{5};

// Makes the worker read the workflow's input topic, one record per workflow id at a time, and
// tells the host which input partitions it owns. Unless `config` sets producer_linger, it sets
// kWorkflowProducerLinger. Hooks already set in `config` still run.
// Throws std::invalid_argument when the topics exist but are not co-partitioned.
inline void Attach(WorkflowHost& host, kafka::WorkerConfig& config) {
  if (Status s = CheckCoPartitioned(config.client, host);
      !s.ok() && s.error().code() == ErrorCode::kInvalidArgument) {
    throw std::invalid_argument(s.error().message());
  }
  for (const std::string& t : host.ExtraTopics()) config.extra_topics.push_back(t);
  config.ordering = kafka::Ordering::kKey;
  // No thread waits for a state write (the worker sends it, Context::WriteAhead), so the usual
  // handler threads do: 4, 8 and 16 made the same steps per second.
  if (!config.producer_linger) config.producer_linger = kWorkflowProducerLinger;
  auto mine = [input = host.input_topic()](const std::vector<kafka::TopicPartition>& parts) {
    std::vector<std::int32_t> out;
    for (const auto& p : parts) {
      if (p.topic == input) out.push_back(p.partition);
    }
    return out;
  };
  config.on_assigned = [&host, mine, before = config.on_assigned](const std::vector<kafka::TopicPartition>& parts) {
    if (before) before(parts);
    host.OnAssigned(mine(parts));
  };
  config.on_revoked = [&host, mine, before = config.on_revoked](const std::vector<kafka::TopicPartition>& parts) {
    if (before) before(parts);
    host.OnRevoked(mine(parts));
  };
}

// The workflow's input topic and its state topic, with the same partition count (the state
// topic compacted), on a real broker. Topics that exist are left as they are, and only missing
// ones are asked of the admin API: a missing state topic gets the input topic's count. The
// embedded broker has no admin API (a request would go unanswered until the timeout): with both
// topics there, or auto-created on first use (4 partitions each; the state topic then neither
// compacts nor keeps more than about 5 MiB per partition, see docs/workflows.md), nothing is
// asked of it.
inline Status CreateWorkflowTopics(const kafka::ClientConfig& client, const WorkflowOptions& workflow,
                                   int partitions, int replication_factor = -1) {
  auto listed = kafka::ListTopics(client);
  if (!listed.ok()) return listed.error();
  int input = 0, state = 0;
  for (const auto& t : *listed) {
    if (t.name == workflow.input_topic) input = t.partitions;
    if (t.name == workflow.state_topic) state = t.partitions;
  }
  std::vector<kafka::TopicSpec> missing;
  if (input == 0) missing.push_back({workflow.input_topic, state > 0 ? state : partitions, replication_factor, {}});
  if (state == 0) {
    missing.push_back({workflow.state_topic, input > 0 ? input : partitions, replication_factor,
                       kafka::CompactedTopicConfigs()});
  }
  if (missing.empty()) return Ok();
  return kafka::CreateTopics(client, missing);
}

// Waits until the brokers answer a metadata request, so that a program started beside Kafka (as
// compose starts everything at once) waits for it rather than exiting and being restarted in a
// loop. Logs "waiting for the brokers" at warn level at most every `log_every`. Returns false as
// soon as `stop()` is true (checked every 100 ms, and between tries of at most 2 s), true once
// the brokers answered.
inline bool WaitForBrokers(const kafka::ClientConfig& client, const std::function<bool()>& stop,
                           std::chrono::milliseconds log_every = std::chrono::seconds(5)) {
  using Clock = std::chrono::steady_clock;
  // Each try is a short-lived client whose connection errors librdkafka would log, three lines
  // a try: this function's own line says it, at its own pace.
  kafka::ClientConfig quiet = client;
  quiet.properties["log_level"] = "2";
  const auto began = Clock::now();
  auto next_log = began;
  for (int attempt = 1;; ++attempt) {
    if (stop()) return false;
    auto listed = kafka::ListTopics(quiet, std::chrono::seconds(2));
    if (listed.ok()) {
      if (attempt > 1) {
        Log(LogLevel::kInfo, "the brokers answer",
            {{"brokers", client.brokers},
             {"waited_ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count()}});
      }
      return true;
    }
    if (Clock::now() >= next_log) {
      Log(LogLevel::kWarn, "waiting for the brokers",
          {{"brokers", client.brokers},
           {"waited_ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count()},
           {"error", listed.error().message()}});
      next_log = Clock::now() + log_every;
    }
    for (int i = 0; i < 10 && !stop(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace kbus::workflows
