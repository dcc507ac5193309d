// A workflow step's state record is sent by the worker, and no thread waits for it
// (Context::WriteAhead): the step's messages leave, and its input is committed, only once the
// record is acknowledged, and the instance's next message waits for that acknowledgement. These
// tests run a counter workflow (each step adds one and sends one message) through what this
// makes possible to get wrong, on both brokers:
//   - partitions revoked while state writes are in flight (a second worker joins mid-stream),
//   - a shutdown with state writes in flight (the next worker finishes the work),
//   - a step whose state is stored but whose input was not committed (as after a crash between
//     the two): delivered again, it sends its messages again and changes nothing.
// Every instance must end with exactly as many steps as it was sent: a step applied twice (a
// write that landed after the next owner loaded the state) or lost would show in the count.
// Three more need the embedded broker's fault injection (skipped on Kafka, which has none):
//   - a state write refused while other instances' writes succeed: sent again, nothing lost,
//   - a state write that cannot be stored: the step is dead-lettered, its message never leaves,
//     and the instance goes on from its stored version,
//   - a worker gone (stopped without committing) after its state was stored and while its
//     message was refused: the next worker sends the message and runs nothing again.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker_faults.hpp"
#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "rb_support.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/state_topic.hpp"
#include "kbus/workflows/host.hpp"
#include "kbus/workflows/kafka.hpp"

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;
using namespace std::chrono_literals;

struct Tick {
  std::string id;
  int n = 0;
};
struct Tock {
  std::string id;
  int n = 0;
  int count = 0;  // the instance's count after the step
};
struct Counter {
  int count = 0;
};

}  // namespace

template <>
struct kbus::MessageTraits<Tick> {
  static constexpr std::string_view kType = "wfasync.Tick";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "wfasync.in";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Tick::id), kbus::Field("n", &Tick::n));
};
template <>
struct kbus::MessageTraits<Tock> {
  static constexpr std::string_view kType = "wfasync.Tock";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "wfasync.out";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Tock::id), kbus::Field("n", &Tock::n),
                                               kbus::Field("count", &Tock::count));
};
template <>
struct kbus::JsonTraits<Counter> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("count", &Counter::count));
};

namespace {

constexpr int kPartitions = 4;

// A test's topics and group: the counter workflow's input and state, and where its steps'
// messages go.
struct Names {
  explicit Names(const std::string& prefix)
      : tag(TestBroker::UniqueName(prefix)), input(tag + ".in"), state(tag + ".state"), out(tag + ".out"),
        group(tag + "-wf") {
    for (const std::string& t : {input, state, out}) TestBroker::Get().CreateTopic(t, kPartitions);
  }
  std::string tag, input, state, out, group;
};

kbus::workflows::Workflow<Counter> CounterWorkflow(const Names& names, int max_deliveries = 5) {
  kbus::workflows::WorkflowOptions options;
  options.input_topic = names.input;
  options.state_topic = names.state;
  options.policy.max_deliveries = max_deliveries;
  kbus::workflows::Workflow<Counter> wf(names.tag, options);
  wf.StartedBy<Tick>([](const Tick& t) { return t.id; },
                     [out = names.out](const Tick& t, Counter& c, kbus::workflows::WorkflowContext& ctx) {
                       ++c.count;
                       ctx.Publish(Tock{t.id, t.n, c.count}, {.topic = out});
                     });
  return wf;
}

// One worker hosting the counter workflow, exactly as a program on Kafka wires it.
class CounterWorker {
 public:
  explicit CounterWorker(const Names& names, std::chrono::milliseconds shutdown_grace = 10s, int max_deliveries = 5)
      : workflow_(CounterWorkflow(names, max_deliveries)),
        state_(it::WorkerConfigFor(names.group).client, names.state),
        store_(state_),
        producer_(it::ProducerConfig()) {
    kbus::workflows::HostConfig hc;
    hc.group = names.group;
    hc.send = kbus::workflows::SendWith(producer_);
    host_ = std::make_unique<kbus::workflows::WorkflowHost>(workflow_, hc, store_);
    host_->Register(handlers_);
    kbus::kafka::WorkerConfig config = it::WorkerConfigFor(names.group);
    config.shutdown_grace = shutdown_grace;
    kbus::workflows::Attach(*host_, config);
    worker_ = std::make_unique<it::RunningWorker>(config, handlers_);
  }
  ~CounterWorker() { Stop(); }
  void Stop() {
    if (worker_) worker_->Stop();
    worker_.reset();
  }
  kbus::workflows::WorkflowHost& host() { return *host_; }

 private:
  kbus::workflows::Workflow<Counter> workflow_;
  kbus::kafka::StateTopic state_;
  kbus::workflows::KafkaStateStore store_;
  kbus::kafka::Producer producer_;
  std::unique_ptr<kbus::workflows::WorkflowHost> host_;
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<it::RunningWorker> worker_;
};

// `instances` instances "<tag>-<i>", `steps` ticks each, in step order per instance.
void SendTicks(const Names& names, int instances, int steps, int first = 0) {
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int n = first; n < first + steps; ++n) {
    for (int i = 0; i < instances; ++i) {
      const std::string id = names.tag + "-" + std::to_string(i);
      ASSERT_TRUE(producer.Produce(kbus::BuildRecord(Tick{id, n}, {.topic = names.input, .key = id})).ok());
    }
  }
  ASSERT_TRUE(producer.Flush(60s).ok());
}

// The instances' counts as the state topic holds them, read by a host of its own.
std::map<std::string, int> StoredCounts(const Names& names, std::size_t instances) {
  auto workflow = CounterWorkflow(names);
  kbus::kafka::StateTopic state(it::WorkerConfigFor(names.group).client, names.state);
  kbus::workflows::KafkaStateStore store(state);
  kbus::workflows::HostConfig hc;
  hc.group = names.group + "-reader";
  hc.send = [](const kbus::OutgoingRecord&) { return kbus::Ok(); };
  kbus::workflows::WorkflowHost reader(workflow, hc, store);
  reader.OnAssigned({0, 1, 2, 3});
  EXPECT_TRUE(WaitFor([&] { return reader.Instances().size() >= instances; }, 60s)) << reader.Instances().size();
  std::map<std::string, int> counts;
  for (const auto& in : reader.Instances()) {
    auto c = kbus::FromJson<Counter>(in.state_json);
    counts[in.workflow_id] = c.ok() ? c->count : -1;
  }
  return counts;
}

// Every step's message, by instance and step number, counting copies (the same step sent
// again keeps its message id).
struct Sent {
  std::map<std::pair<std::string, int>, std::set<std::string>> ids;  // (id, n) -> message ids
  std::map<std::pair<std::string, int>, int> counts;                  // (id, n) -> count it carried
  std::size_t records = 0;
};

// Every record of the output topic, copies included.
Sent ReadSent(const Names& names) {
  std::size_t stored = 0;
  for (const auto& w : rb::Watermarks(TestBroker::Get().bootstrap(), names.out, kPartitions)) {
    stored += static_cast<std::size_t>(w.high);
  }
  Sent sent;
  for (const auto& r : kbus::test::ReadTopic(TestBroker::Get().bootstrap(), names.out, stored, 60s)) {
    auto tock = kbus::FromJson<Tock>(r.payload);
    if (!tock.ok()) continue;
    ++sent.records;
    sent.ids[{tock->id, tock->n}].insert(r.FindHeader("kbus-id").value_or(""));
    sent.counts[{tock->id, tock->n}] = tock->count;
  }
  return sent;
}

// Every instance took every step once: its count is `steps`, and step n's message says n + 1.
void ExpectEveryStepOnce(const Names& names, int instances, int steps) {
  const auto total = static_cast<std::size_t>(instances) * static_cast<std::size_t>(steps);
  const Sent sent = ReadSent(names);
  EXPECT_EQ(sent.ids.size(), total) << "steps whose message is missing";
  for (const auto& [step, ids] : sent.ids) {
    EXPECT_EQ(ids.size(), 1u) << step.first << " step " << step.second << " was sent under " << ids.size()
                              << " message ids: applied more than once";
    EXPECT_EQ(sent.counts.at(step), step.second + 1) << step.first << " step " << step.second;
  }
  const auto counts = StoredCounts(names, static_cast<std::size_t>(instances));
  ASSERT_EQ(counts.size(), static_cast<std::size_t>(instances));
  for (const auto& [id, count] : counts) EXPECT_EQ(count, steps) << id;
}

std::uint64_t Handled(CounterWorker& w) { return w.host().Stats().handled; }

TEST(WorkflowAsyncWrites, PartitionsRevokedWithStateWritesInFlightLoseAndRepeatNoStep) {
  const Names names("wfa-revoke");
  constexpr int kInstances = 60, kSteps = 80;
  CounterWorker first(names);
  // The ticks arrive over about eight seconds, a round of one per instance every 100 ms, so that
  // work is still flowing when the group has rebalanced (on Kafka that takes seconds).
  std::thread ticks([&] {
    for (int n = 0; n < kSteps; ++n) {
      SendTicks(names, kInstances, 1, n);
      std::this_thread::sleep_for(100ms);
    }
  });
  EXPECT_TRUE(WaitFor([&] { return Handled(first) >= kInstances * 5; }, 60s));
  // A second member joins while the first has state writes in flight: the first gives some
  // partitions away in the middle of the stream.
  CounterWorker second(names);
  EXPECT_TRUE(WaitFor([&] { return Handled(second) > 0; }, 60s)) << "the second member never got a partition";
  ticks.join();
  ASSERT_TRUE(WaitFor([&] { return ReadSent(names).ids.size() >= static_cast<std::size_t>(kInstances * kSteps); },
                      120s));
  ExpectEveryStepOnce(names, kInstances, kSteps);
}

TEST(WorkflowAsyncWrites, AShutdownWithStateWritesInFlightLeavesTheRestToTheNextWorker) {
  const Names names("wfa-stop");
  constexpr int kInstances = 60, kSteps = 40;
  SendTicks(names, kInstances, kSteps);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  {
    // A grace too short for the writes in flight: what is not acknowledged is not committed.
    CounterWorker first(names, 1ms);
    ASSERT_TRUE(WaitFor([&] { return Handled(first) >= kInstances * kSteps / 4; }, 60s));
    first.Stop();
    EXPECT_LT(Handled(first), static_cast<std::uint64_t>(kInstances * kSteps)) << "stopped too late to test anything";
  }
  CounterWorker next(names);
  ASSERT_TRUE(WaitFor([&] { return ReadSent(names).ids.size() >= static_cast<std::size_t>(kInstances * kSteps); },
                      120s));
  ExpectEveryStepOnce(names, kInstances, kSteps);
}

TEST(WorkflowAsyncWrites, AStoredStepWhoseInputWasNotCommittedOnlySendsItsMessageAgain) {
  const Names names("wfa-again");
  SendTicks(names, 1, 1);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  const std::string id = names.tag + "-0";
  {
    CounterWorker first(names);
    ASSERT_TRUE(WaitFor([&] { return ReadSent(names).records == 1; }, 60s));
  }
  // A new group reads the input from its start, as a member does when a crash came between the
  // state write and the commit: the instance has the step, so nothing runs and nothing is
  // written; its message is sent again, under the same id.
  Names again = names;
  again.group = names.group + "-after-crash";
  CounterWorker second(again);
  ASSERT_TRUE(WaitFor([&] { return second.host().Stats().duplicates == 1; }, 60s));
  ASSERT_TRUE(WaitFor([&] { return ReadSent(names).records == 2; }, 60s));
  const Sent sent = ReadSent(names);
  ASSERT_EQ(sent.ids.size(), 1u);
  EXPECT_EQ(sent.ids.begin()->second.size(), 1u) << "the copy must keep the message id";
  EXPECT_EQ(second.host().Stats().state_writes, 0u);
  auto held = second.host().Instance(id);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->version, 1u);
  EXPECT_EQ(kbus::FromJson<Counter>(held->state_json)->count, 1);
}

// Kafka protocol numbers for rdkafka_mock.h (2.0.2 keeps RD_KAFKAP_* private).
constexpr std::int16_t kProduce = 0;
constexpr std::int32_t kBroker = 1;  // the embedded broker's only broker

// Permanent produce errors (librdkafka does not retry them) for the next `n` produce requests.
void RefuseProduceRequests(int n) {
  rd_kafka_mock_cluster_t* mc = kbus::kafka::EmbeddedBrokerFaults::MockCluster(*TestBroker::Get().embedded_broker());
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mc, kBroker, kProduce, 1,
                                                           RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, 0),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
}

bool RefusalsServed() {
  rd_kafka_mock_cluster_t* mc = kbus::kafka::EmbeddedBrokerFaults::MockCluster(*TestBroker::Get().embedded_broker());
  std::size_t left = 0;
  return rd_kafka_mock_broker_error_stack_cnt(mc, kBroker, kProduce, &left) == RD_KAFKA_RESP_ERR_NO_ERROR && left == 0;
}

TEST(WorkflowAsyncWrites, AStateWriteRefusedWhileOtherInstancesWritesSucceedIsSentAgain) {
  if (!TestBroker::Get().embedded()) GTEST_SKIP() << "needs the embedded broker's fault injection";
  const Names names("wfa-refused");
  constexpr int kInstances = 40, kSteps = 30;
  SendTicks(names, kInstances, kSteps);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  CounterWorker worker(names);
  ASSERT_TRUE(WaitFor([&] { return Handled(worker) >= kInstances * kSteps / 5; }, 60s));
  // The worker's next produce request fails: the instances whose state records it carried wait
  // (at least a second) to send them again; the others' later writes succeed meanwhile.
  RefuseProduceRequests(1);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  ASSERT_TRUE(WaitFor(RefusalsServed, 60s));
  const std::uint64_t at_refusal = Handled(worker);
  ASSERT_TRUE(WaitFor([&] { return ReadSent(names).ids.size() >= static_cast<std::size_t>(kInstances * kSteps); },
                      120s));
  EXPECT_GT(Handled(worker), at_refusal);
  ExpectEveryStepOnce(names, kInstances, kSteps);
  EXPECT_EQ(worker.host().Stats().failed, 0u);
}

TEST(WorkflowAsyncWrites, AStateWriteThatCannotBeStoredDeadLettersItsStepAndTheInstanceGoesOnFromItsStoredState) {
  if (!TestBroker::Get().embedded()) GTEST_SKIP() << "needs the embedded broker's fault injection";
  const Names names("wfa-unstored");
  const std::string id = names.tag + "-0";
  SendTicks(names, 1, 1);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  {
    CounterWorker first(names, 10s, 2);
    ASSERT_TRUE(WaitFor([&] { return ReadSent(names).records == 1; }, 60s));
  }
  // Step 1 meets two refused writes, which use up its two deliveries: it is dead-lettered, and
  // the instance in memory is put back to the stored step 0.
  SendTicks(names, 1, 1, 1);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  RefuseProduceRequests(2);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  CounterWorker second(names, 10s, 2);
  const auto dlq = kbus::test::ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(names.group), 1, 60s);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "publish-error");
  EXPECT_NE(dlq[0].FindHeader("kbus-dlq-error").value_or("").find("write-ahead"), std::string::npos)
      << dlq[0].FindHeader("kbus-dlq-error").value_or("");
  EXPECT_NE(dlq[0].payload.find("\"n\":1"), std::string::npos) << dlq[0].payload;
  ASSERT_TRUE(WaitFor([&] {
    auto held = second.host().Instance(id);
    return held && held->version == 1u;
  }, 30s)) << "the instance was not put back to its stored version";
  EXPECT_EQ(kbus::FromJson<Counter>(second.host().Instance(id)->state_json)->count, 1);

  // Its next step goes on from there: count 2, not 3; step 1's message never left.
  SendTicks(names, 1, 1, 2);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  ASSERT_TRUE(WaitFor([&] { return ReadSent(names).records == 2; }, 60s));
  const Sent sent = ReadSent(names);
  EXPECT_FALSE(sent.counts.contains({id, 1})) << "the unstored step's message was sent";
  ASSERT_TRUE(sent.counts.contains({id, 2}));
  EXPECT_EQ(sent.counts.at({id, 2}), 2);
  EXPECT_EQ(StoredCounts(names, 1).at(id), 2);
}

TEST(WorkflowAsyncWrites, AWorkerGoneWithItsStateStoredAndItsMessageUnsentLeavesTheMessageToTheNext) {
  if (!TestBroker::Get().embedded()) GTEST_SKIP() << "needs the embedded broker's fault injection";
  const Names names("wfa-gone");
  const std::string id = names.tag + "-0";
  SendTicks(names, 1, 1);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  // The worker's first produce request (the state record) is answered; the next three (its
  // message, sent again each round) are refused, and the worker goes away meanwhile without
  // committing: its state is stored, its message is not.
  rd_kafka_mock_cluster_t* mc = kbus::kafka::EmbeddedBrokerFaults::MockCluster(*TestBroker::Get().embedded_broker());
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mc, kBroker, kProduce, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 0),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  RefuseProduceRequests(3);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  {
    CounterWorker first(names, 1ms, 100);
    ASSERT_TRUE(WaitFor([&] { return first.host().Stats().state_writes == 1; }, 60s)) << "the state was not stored";
    ASSERT_TRUE(WaitFor(RefusalsServed, 60s));
    first.Stop();
  }
  EXPECT_EQ(ReadSent(names).records, 0u) << "the message left although its sends were refused";
  // The next worker finds the step in the stored state: it sends the message, runs nothing.
  CounterWorker next(names);
  ASSERT_TRUE(WaitFor([&] { return ReadSent(names).records >= 1; }, 60s));
  const Sent sent = ReadSent(names);
  EXPECT_EQ(sent.records, 1u);
  EXPECT_EQ(sent.counts.at({id, 0}), 1);
  EXPECT_EQ(next.host().Stats().duplicates, 1u);
  EXPECT_EQ(next.host().Stats().state_writes, 0u);
  EXPECT_EQ(StoredCounts(names, 1).at(id), 1);
}

}  // namespace
