// A handler that never returns, ignoring its deadline and its cancellation: the worker abandons
// the delivery at its visibility timeout, keeps handling the records around it, and three
// timeouts after the handler started it commits and exits with code 70 rather than leak the
// thread. The delivery was counted before it ran, so restarts do not loop forever: the delivery
// that reaches max_deliveries is dead-lettered when it times out, and the exit commits past it.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <set>

#include "it_support.hpp"
#include "rb_support.hpp"
#include "kbus/dead_letter.hpp"

namespace {

using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using rb::WaitExit;
using Clock = std::chrono::steady_clock;

std::set<std::string> Lines(const std::string& path) {
  std::set<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.insert(line);
  return lines;
}

TEST(Stuck, AHandlerThatNeverReturnsMakesTheWorkerExitAndEndsInTheDeadLetterTopic) {
  const std::string topic = TestBroker::UniqueName("rb-stuck");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  const std::string out = testing::TempDir() + "/" + group + ".log";
  std::remove(out.c_str());
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{0, "ok", ""}, {.topic = topic, .key = "a"})).ok());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "stuck", ""}, {.topic = topic, .key = "b"})).ok());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{2, "ok", ""}, {.topic = topic, .key = "c"})).ok());

  const std::vector<std::string> args = {CRASH_WORKER_PATH, TestBroker::Get().bootstrap(), group, topic, out,
                                         "500", "2", "20000"};
  // Two runs, each stuck on the record's delivery: exit 70, at least three timeouts after start.
  // (The 20 s backoff keeps the retry out of the first run: the second owner makes it.)
  for (int run = 1; run <= 2; ++run) {
    const auto started = Clock::now();
    const pid_t pid = rb::Spawn(args);
    ASSERT_GT(pid, 0);
    const int code = WaitExit(pid, std::chrono::seconds(90));
    EXPECT_EQ(code, kbus::kafka::kExitStuckHandler) << "run " << run;
    EXPECT_GE(Clock::now() - started, std::chrono::milliseconds(1500)) << "exited before 3 timeouts";
    const auto committed = rb::Committed(TestBroker::Get().bootstrap(), group, topic, 1);
    if (run == 1) {
      const auto lines = Lines(out);
      EXPECT_TRUE(lines.contains("handled 0 1")) << "the record before the stuck one";
      EXPECT_TRUE(lines.contains("handled 2 1")) << "the record after the stuck one waited for it";
      // The exit committed the finished prefix; the stuck record's count went with it.
      EXPECT_EQ(committed[0], 1);
    } else {
      // The second delivery was the last: dead-lettered at its timeout, and committed past.
      // (Record 2 is a suspect too, so it runs after record 1 is settled; whether it finished
      // before the exit depends on how fast the broker acknowledged the dead letter.)
      EXPECT_GE(committed[0], 2);
    }
  }
  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].key, "b");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "visibility-timeout");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "2");
  EXPECT_NE(dlq[0].FindHeader("kbus-dlq-error").value_or("").find("visibility timeout"), std::string::npos);
  // The record before the stuck one ran once. The one after it finished in the first run, but
  // an offset cannot be committed past an unfinished record, so the second owner ran it again:
  // one extra delivery per unclean exit, no more.
  const auto lines = Lines(out);
  EXPECT_FALSE(lines.contains("handled 0 2"));
  EXPECT_FALSE(lines.contains("handled 2 3"));
}

}  // namespace
