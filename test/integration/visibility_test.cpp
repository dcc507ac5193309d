// Parallel handling and visibility timeouts: a delivery that outlives its timeout is abandoned
// (its late messages never appear) and delivered again; one that extends in time is not; a
// cancelled handler can see it; a stuck key holds back only its own key; records of one key run
// one at a time and in order, retries included.

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "it_support.hpp"
#include "kbus/json.hpp"

namespace vt {
struct Step {
  std::int64_t id = 0;
};
struct StepDone {
  std::int64_t id = 0;
  std::int64_t attempt = 0;
};
}  // namespace vt

template <>
struct kbus::MessageTraits<vt::Step> {
  static constexpr std::string_view kType = "vt.Step";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "vt.steps";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &vt::Step::id));
};

template <>
struct kbus::MessageTraits<vt::StepDone> {
  static constexpr std::string_view kType = "vt.StepDone";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "vt.done";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &vt::StepDone::id),
                                               kbus::Field("attempt", &vt::StepDone::attempt));
};

namespace {

using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::milliseconds;

struct Topics {
  std::string in = TestBroker::UniqueName("it-vis");
  std::string out = TestBroker::UniqueName("it-vis-done");
  std::string group = TestBroker::UniqueName("g");
  Topics() {
    TestBroker::Get().CreateTopic(in, 1);
    TestBroker::Get().CreateTopic(out, 1);
  }
};

void SendStep(const std::string& topic, std::int64_t id, const std::string& key = "k") {
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(vt::Step{id}, {.topic = topic, .key = key})).ok());
}

std::int64_t Field(const kbus::test::ReadRecord& r, const std::string& name) {
  kbus::JsonDocument doc;
  if (!doc.Parse(r.payload).ok()) return -1;
  auto v = doc.Root().Find(name);
  return v ? v->AsInt64().value_or(-1) : -1;
}

TEST(Visibility, AHandlerSlowerThanItsTimeoutIsDeliveredAgainAndItsLateMessagesNeverAppear) {
  Topics t;
  std::atomic<int> runs{0};
  std::atomic<bool> late_returned{false};
  kbus::HandlerRegistry handlers;
  handlers.Handle<vt::Step>(
      [&](const vt::Step& s, kbus::Context& ctx) {
        if (s.id == 1) {
          ++runs;
          if (ctx.attempt() == 1) {
            // Outlives its deadline and publishes anyway. It returns once abandoned, well before
            // the worker would call it stuck (3 timeouts) and exit: a fixed sleep either side of
            // that line races it on a loaded machine.
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (!ctx.Cancelled() && std::chrono::steady_clock::now() < give_up) {
              std::this_thread::sleep_for(milliseconds(5));
            }
            ctx.Publish(vt::StepDone{s.id, ctx.attempt()}, {.topic = t.out, .key = "k"});
            late_returned = true;
            return;
          }
        }
        ctx.Publish(vt::StepDone{s.id, ctx.attempt()}, {.topic = t.out, .key = "k"});
      },
      {.topic = t.in, .policy = {.visibility_timeout = milliseconds(500)}});
  it::RunningWorker worker(it::WorkerConfigFor(t.group), handlers);
  SendStep(t.in, 1);
  ASSERT_TRUE(WaitFor([&] { return late_returned.load(); }));
  // Sent after the late attempt returned: had its message gone out, it would sit between the
  // second attempt's and this one's on the events partition (one key, one partition).
  SendStep(t.in, 2);
  const auto done = ReadTopic(TestBroker::Get().bootstrap(), t.out, 2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(Field(done[0], "id"), 1);
  EXPECT_EQ(Field(done[0], "attempt"), 2) << "the first attempt's late message was sent";
  EXPECT_EQ(Field(done[1], "id"), 2);
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(worker.Stats().abandoned, 1u);
}

TEST(Visibility, AHandlerThatExtendsInTimeIsNotDeliveredAgain) {
  Topics t;
  std::atomic<int> runs{0};
  std::atomic<bool> deadline_in_future{true};
  kbus::HandlerRegistry handlers;
  handlers.Handle<vt::Step>(
      [&](const vt::Step& s, kbus::Context& ctx) {
        ++runs;
        const auto end = std::chrono::steady_clock::now() + milliseconds(1500);
        while (std::chrono::steady_clock::now() < end) {
          if (ctx.Deadline() <= std::chrono::steady_clock::now()) deadline_in_future = false;
          EXPECT_TRUE(ctx.ExtendVisibility(milliseconds(500)));
          std::this_thread::sleep_for(milliseconds(100));
        }
        ctx.Publish(vt::StepDone{s.id, ctx.attempt()}, {.topic = t.out, .key = "k"});
      },
      {.topic = t.in, .policy = {.visibility_timeout = milliseconds(500)}});
  it::RunningWorker worker(it::WorkerConfigFor(t.group), handlers);
  SendStep(t.in, 1);
  const auto done = ReadTopic(TestBroker::Get().bootstrap(), t.out, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(Field(done[0], "attempt"), 1);
  EXPECT_EQ(runs.load(), 1) << "an extended delivery was delivered again";
  EXPECT_TRUE(deadline_in_future.load());
  EXPECT_EQ(worker.Stats().abandoned, 0u);
}

TEST(Visibility, AnAbandonedHandlerSeesItIsCancelledAndItsResultIsDiscarded) {
  Topics t;
  std::atomic<bool> saw_cancel{false};
  std::atomic<int> runs{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<vt::Step>(
      [&](const vt::Step&, kbus::Context& ctx) -> kbus::Outcome {
        ++runs;
        if (ctx.attempt() == 1) {
          const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
          while (!ctx.Cancelled() && std::chrono::steady_clock::now() < give_up) {
            std::this_thread::sleep_for(milliseconds(5));
          }
          saw_cancel = ctx.Cancelled();
          EXPECT_FALSE(ctx.ExtendVisibility(milliseconds(1000))) << "too late to extend";
          return kbus::DeadLetter("discarded: the delivery was abandoned");
        }
        return kbus::Ack();
      },
      {.topic = t.in, .policy = {.visibility_timeout = milliseconds(300)}});
  it::RunningWorker worker(it::WorkerConfigFor(t.group), handlers);
  SendStep(t.in, 1);
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().handled == 1; }));
  EXPECT_TRUE(saw_cancel.load());
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(worker.Stats().dead_lettered, 0u) << "the abandoned attempt's outcome was used";
}

TEST(Ordering, APartitionKeepsFlowingWhileOneKeyIsStuck) {
  Topics t;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<std::int64_t> started_stuck_key;
  std::atomic<int> others{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<vt::Step>(
      [&](const vt::Step& s, kbus::Context& ctx) {
        if (ctx.record().key == "stuck") {
          std::unique_lock lock(mu);
          started_stuck_key.push_back(s.id);
          if (s.id == 0) cv.wait(lock, [&] { return release; });
          return;
        }
        ++others;
      },
      {.topic = t.in});
  it::RunningWorker worker(it::WorkerConfigFor(t.group), handlers);
  // However the test ends, the stuck handler is released before the worker stops.
  struct Release {
    std::mutex& mu;
    std::condition_variable& cv;
    bool& release;
    ~Release() {
      {
        std::lock_guard lock(mu);
        release = true;
      }
      cv.notify_all();
    }
  } release_at_exit{mu, cv, release};
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.Produce(kbus::BuildRecord(vt::Step{0}, {.topic = t.in, .key = "stuck"})).ok());
  ASSERT_TRUE(producer.Produce(kbus::BuildRecord(vt::Step{1}, {.topic = t.in, .key = "stuck"})).ok());
  for (int i = 2; i < 202; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(vt::Step{i}, {.topic = t.in, .key = "k" + std::to_string(i)})).ok());
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)).ok());

  ASSERT_TRUE(WaitFor([&] { return others.load() == 200; }, std::chrono::seconds(20)))
      << "the stuck key held back the partition: " << others.load() << " of 200 others handled";
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(started_stuck_key, std::vector<std::int64_t>{0}) << "a record ran before the one ahead of it on its key finished";
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return started_stuck_key.size() == 2;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(started_stuck_key, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(worker.Stats().abandoned, 0u);
}

TEST(Ordering, RecordsOfOneKeyRunOneAtATimeAndInOrderAcrossRetries) {
  Topics t;
  constexpr int kKeys = 4;
  constexpr int kPerKey = 40;
  std::mutex mu;
  std::map<std::string, std::vector<std::int64_t>> acked;  // per key, in ack order
  std::map<std::string, int> running;
  int overlaps = 0;
  std::atomic<int> retries{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<vt::Step>(
      [&](const vt::Step& s, kbus::Context& ctx) -> kbus::Outcome {
        const std::string key(ctx.record().key);
        {
          std::lock_guard lock(mu);
          if (running[key]++ > 0) ++overlaps;
        }
        std::this_thread::sleep_for(milliseconds(1));
        const bool fail = s.id % 5 == 0 && ctx.attempt() < 3;
        std::lock_guard lock(mu);
        --running[key];
        if (fail) {
          ++retries;
          return kbus::Retry(milliseconds(0), "fails twice");
        }
        acked[key].push_back(s.id);
        return kbus::Ack();
      },
      {.topic = t.in});
  it::RunningWorker worker(it::WorkerConfigFor(t.group), handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 0; i < kKeys * kPerKey; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(vt::Step{i}, {.topic = t.in, .key = "key" + std::to_string(i % kKeys)})).ok());
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    std::size_t n = 0;
    for (const auto& [k, ids] : acked) n += ids.size();
    return n == kKeys * kPerKey;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(overlaps, 0) << "two records of one key ran at the same time";
  EXPECT_EQ(retries.load(), 2 * kKeys * kPerKey / 5);
  for (const auto& [key, ids] : acked) {
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << "key " << key << " ran out of order";
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(kPerKey));
  }
}

}  // namespace
