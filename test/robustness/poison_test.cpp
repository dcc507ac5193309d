// A record that crashes the whole process: the delivery ledger in the commit metadata must
// count its deliveries across crashes, so that it ends in the dead-letter topic instead of
// crash-looping, and the records around it must be handled, each charged at most one extra
// delivery per crash that caught it in flight.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <sstream>

#include "it_support.hpp"
#include "rb_support.hpp"
#include "kbus/dispatcher.hpp"


namespace {

using kbus::test::ReadTopic;
using kbus::test::TestBroker;

struct Progress {
  std::map<std::int64_t, int> max_attempt;  // innocent id -> highest delivery number seen
  std::size_t handled_lines = 0;
  int dead_lettered = 0;
};

Progress ReadProgress(const std::string& path) {
  Progress p;
  std::ifstream in(path);
  std::string word;
  std::int64_t a = 0;
  std::int64_t b = 0;
  while (in >> word) {
    if (word == "handled" && in >> a >> b) {
      ++p.handled_lines;
      p.max_attempt[a] = std::max(p.max_attempt[a], static_cast<int>(b));
    } else if (word == "dead-lettered" && in >> a) {
      p.dead_lettered = std::max(p.dead_lettered, static_cast<int>(a));
    }
  }
  return p;
}

TEST(Poison, ARecordThatCrashesTheProcessEndsInTheDeadLetterTopicAfterMaxDeliveries) {
  const std::string topic = TestBroker::UniqueName("rb-poison");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);  // one partition: the poison sits among the others
  const std::string out = testing::TempDir() + "/" + group + ".log";
  std::remove(out.c_str());

  constexpr int kInnocents = 40;
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 0; i < kInnocents; ++i) {
    if (i == 15) {
      ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{999, "poison", ""}, {.topic = topic})).ok());
    }
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{i, "ok", ""}, {.topic = topic})).ok());
  }

  int crashes = 0;
  bool done = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (!done && std::chrono::steady_clock::now() < deadline) {
    const pid_t pid = rb::Spawn({CRASH_WORKER_PATH, TestBroker::Get().bootstrap(), group, topic, out});
    ASSERT_GT(pid, 0);
    for (;;) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) << "unexpected exit " << status;
        ++crashes;
        break;  // restart it, as a supervisor would
      }
      const Progress p = ReadProgress(out);
      if (p.max_attempt.size() == kInnocents && p.dead_lettered >= 1) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
        done = true;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  const Progress p = ReadProgress(out);
  ASSERT_TRUE(done) << "after " << crashes << " crashes: " << p.max_attempt.size() << " of "
                    << kInnocents << " innocents handled, dead-lettered " << p.dead_lettered;

  // Five deliveries, each of which crashed the process; the sixth owner did not run it.
  EXPECT_EQ(crashes, 5);
  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].payload, R"({"id":999,"tenant":"poison","body":""})");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "suspected-crash");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "5");

  // Innocents leased in the wave that first crashed were charged once more; later crashes ran
  // the poison alone, so they charged nobody else.
  int worst = 0;
  for (const auto& [id, attempt] : p.max_attempt) worst = std::max(worst, attempt);
  EXPECT_LE(worst, 2) << "an innocent record was charged for more than one crash";
  RecordProperty("crashes", crashes);
  RecordProperty("handled_lines", static_cast<int>(p.handled_lines));
  std::printf("poison: %d crashes, %zu handler runs for %d innocent records, worst delivery %d\n",
              crashes, p.handled_lines, kInnocents, worst);
}

}  // namespace
