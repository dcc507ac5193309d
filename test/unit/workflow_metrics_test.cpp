// A workflow host's operations surface without a broker: the kbus_workflow_* series after a
// few runs through the test kit, and the "workflow <name>" probe, which is ready only once the
// state of every assigned partition is loaded.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kbus/health.hpp"
#include "kbus/metrics.hpp"
#include "kbus/workflows/test_kit.hpp"
#include "exposition.hpp"

namespace {

using namespace std::chrono_literals;
using kbus::workflows::Workflow;
using kbus::workflows::WorkflowContext;
using kbus::workflows::WorkflowTestKit;

struct Begin {
  std::string id;
};
struct Bump {  // changes the state; an amount of 0 changes nothing
  std::string id;
  int amount = 1;
};
struct Finish {
  std::string id;
  bool ok = true;
};
struct Tally {
  int count = 0;
  bool reminded = false;
  std::string reminder;
};

}  // namespace

template <>
struct kbus::MessageTraits<Begin> {
  static constexpr std::string_view kType = "metrics.Begin";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "metrics.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Begin::id));
};
template <>
struct kbus::MessageTraits<Bump> {
  static constexpr std::string_view kType = "metrics.Bump";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "metrics.events";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Bump::id), kbus::Field("amount", &Bump::amount));
};
template <>
struct kbus::MessageTraits<Finish> {
  static constexpr std::string_view kType = "metrics.Finish";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "metrics.events";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Finish::id), kbus::Field("ok", &Finish::ok));
};
template <>
struct kbus::JsonTraits<Tally> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("count", &Tally::count),
                                               kbus::Field("reminded", &Tally::reminded),
                                               kbus::Field("reminder", &Tally::reminder));
};

namespace {

Workflow<Tally> TallyWorkflow() {
  Workflow<Tally> wf("metrics.tally");
  wf.StartedBy<Begin>([](const Begin& m) { return m.id; },
                      [](const Begin&, Tally& s, WorkflowContext& ctx) {
                        s.reminder = ctx.RequestTimeout("remind", 1min);
                      });
  wf.Handles<Bump>([](const Bump& m, Tally& s, WorkflowContext&) { s.count += m.amount; },
                   {.key = [](const Bump& m) { return m.id; }});
  wf.Handles<Finish>(
      [](const Finish& m, Tally&, WorkflowContext& ctx) {
        if (m.ok) {
          ctx.Complete();
        } else {
          ctx.DeadLetter("gave-up", "told to fail");
        }
      },
      {.key = [](const Finish& m) { return m.id; }});
  wf.OnTimeout("remind", [](const kbus::workflows::Timeout&, Tally& s, WorkflowContext&) { s.reminded = true; });
  return wf;
}


double Value(const kbus::metrics::Registry& metrics, const std::string& series) {
  const std::string text = metrics.Render();
  auto v = kbus::test::SampleValue(text, series);
  EXPECT_TRUE(v.has_value()) << series << " is not in\n" << text;
  return v.value_or(-1);
}

// Asks the board until `ready` is what it says, for at most 10 s.
bool WaitReady(const kbus::health::Board& board, bool ready) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (board.Check().ready != ready) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(WorkflowMetrics, CountStepsRunsInstancesByStatusStateWritesAndTimeouts) {
  kbus::metrics::Registry metrics;  // first: the kit's host reports here until it is gone
  kbus::health::Board board;
  WorkflowTestKit<Tally> kit(TallyWorkflow());
  kit.host().ReportTo(metrics, board);
  ASSERT_TRUE(WaitReady(board, true)) << board.Check().json;

  for (const char* id : {"a", "b", "c"}) kit.Send(Begin{id});
  EXPECT_EQ(Value(metrics, R"(kbus_workflow_instances{workflow="metrics.tally",status="running"})"), 3);
  EXPECT_EQ(Value(metrics, R"(kbus_workflow_timeouts_pending{workflow="metrics.tally"})"), 3);

  kit.Send(Bump{"a", 2});
  kit.Send(Bump{"a", 0});         // changes nothing: nothing written
  kit.Send(Bump{"nobody", 1});    // no such instance
  kit.Send(Finish{"a", true});
  kit.Send(Finish{"b", false});
  kit.Send(Bump{"a", 1});         // late: a completed
  kit.Advance(1min);              // c's reminder fires and runs

  const std::string w = R"(workflow="metrics.tally")";
  EXPECT_EQ(Value(metrics, "kbus_workflow_instances{" + w + R"(,status="running"})"), 1);
  EXPECT_EQ(Value(metrics, "kbus_workflow_instances{" + w + R"(,status="completed"})"), 1);
  EXPECT_EQ(Value(metrics, "kbus_workflow_instances{" + w + R"(,status="failed"})"), 1);
  EXPECT_EQ(Value(metrics, "kbus_workflow_timeouts_pending{" + w + "}"), 0);
  EXPECT_EQ(Value(metrics, "kbus_workflow_timeouts_fired_total{" + w + "}"), 1);
  EXPECT_EQ(Value(metrics, "kbus_workflow_runs_total{" + w + R"(,result="started"})"), 3);
  EXPECT_EQ(Value(metrics, "kbus_workflow_runs_total{" + w + R"(,result="completed"})"), 1);
  EXPECT_EQ(Value(metrics, "kbus_workflow_runs_total{" + w + R"(,result="failed"})"), 1);

  // Each message first comes on its own topic and is re-keyed into the input topic.
  auto steps = [&](const std::string& type, const std::string& result) {
    return Value(metrics, "kbus_workflow_steps_total{" + w + R"(,type=")" + type + R"(",result=")" + result + "\"}");
  };
  EXPECT_EQ(steps("metrics.Begin", "rekeyed"), 3);
  EXPECT_EQ(steps("metrics.Begin", "applied"), 3);
  EXPECT_EQ(steps("metrics.Bump", "applied"), 1);
  EXPECT_EQ(steps("metrics.Bump", "unchanged"), 1);
  EXPECT_EQ(steps("metrics.Bump", "not_found"), 1);
  EXPECT_EQ(steps("metrics.Bump", "late"), 1);
  EXPECT_EQ(steps("metrics.Finish", "applied"), 2);
  EXPECT_EQ(steps("metrics.tally.timeout", "applied"), 1);
  EXPECT_EQ(steps("metrics.Bump", "error"), 0);

  // Every state write is timed: 3 starts, a bump, 2 endings, the reminder.
  EXPECT_EQ(kit.Stats().state_writes, 7u);
  EXPECT_EQ(Value(metrics, "kbus_workflow_state_write_seconds_count{" + w + "}"), 7);
  EXPECT_EQ(Value(metrics, "kbus_workflow_partitions{" + w + R"(,state="ready"})"), 1);
  EXPECT_EQ(Value(metrics, "kbus_workflow_partitions{" + w + R"(,state="loading"})"), 0);

  const auto answer = board.Check();
  EXPECT_TRUE(answer.live);
  EXPECT_NE(answer.json.find(R"("workflow metrics.tally":{"live":true,"ready":true,"active_work":0,"partitions":1,)"
                             R"("partitions_loaded":1,"instances_running":1,"timeouts_pending":0})"),
            std::string::npos)
      << answer.json;
}

// A store whose partition 1 fails its first load and then waits until released.
class GatedStore final : public kbus::workflows::StateStore {
 public:
  kbus::Status Load(std::int32_t partition,
                    const std::function<void(std::string_view, std::string_view)>& each) override {
    if (partition != 1) return memory_.Load(partition, each);
    std::unique_lock lock(mu_);
    if (++loads_ == 1) return kbus::Error(kbus::ErrorCode::kTransport, "the broker went away (test)", true);
    cv_.wait(lock, [&] { return open_; });
    return memory_.Load(partition, each);
  }
  kbus::Status Write(std::int32_t partition, std::string_view key, std::string_view value) override {
    return memory_.Write(partition, key, value);
  }
  kbus::Status Erase(std::int32_t partition, std::string_view key) override { return memory_.Erase(partition, key); }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  kbus::workflows::MemoryStateStore memory_;
  std::mutex mu_;
  std::condition_variable cv_;
  int loads_ = 0;
  bool open_ = false;
};

TEST(WorkflowMetrics, TheProbeIsReadyOnlyOnceEveryAssignedPartitionIsLoadedAndNotAfterStop) {
  kbus::metrics::Registry metrics;
  kbus::health::Board board;
  GatedStore store;
  const Workflow<Tally> workflow = TallyWorkflow();
  kbus::workflows::WorkflowHost host(workflow, {.group = "g"}, store);
  host.ReportTo(metrics, board);
  host.Start();
  host.OnAssigned({0, 1});

  // Partition 1 fails once, then waits: the host is live but not ready, and says why.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (kbus::test::SampleValue(metrics.Render(), R"(kbus_workflow_state_load_errors_total{workflow="metrics.tally"})").value_or(0) < 1 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  auto answer = board.Check();
  EXPECT_TRUE(answer.live);
  EXPECT_FALSE(answer.ready);
  EXPECT_NE(answer.json.find("loading the state of input partitions 1; partition 1 failed 1 time(s): "
                             "the broker went away (test)"),
            std::string::npos)
      << answer.json;
  EXPECT_EQ(Value(metrics, R"(kbus_workflow_partitions{workflow="metrics.tally",state="loading"})"), 1);

  store.Open();
  EXPECT_TRUE(WaitReady(board, true)) << board.Check().json;
  EXPECT_EQ(Value(metrics, R"(kbus_workflow_partitions{workflow="metrics.tally",state="ready"})"), 2);
  EXPECT_EQ(Value(metrics, R"(kbus_workflow_state_load_seconds_count{workflow="metrics.tally"})"), 2);

  host.Stop();
  answer = board.Check();
  EXPECT_TRUE(answer.live);
  EXPECT_FALSE(answer.ready);
  EXPECT_NE(answer.json.find("the workflow host is stopped"), std::string::npos) << answer.json;
}

}  // namespace
