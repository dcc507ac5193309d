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
#include "kbus/dead_letter.hpp"


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

// Restarts crash_worker after every crash, as a supervisor would, until every innocent record
// [0, innocents) was handled and the poison dead-lettered (or 240 s passed). Returns the crashes.
int RunUntilDeadLettered(const std::string& group, const std::string& topic, const std::string& out, int innocents) {
  int crashes = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t pid = rb::Spawn({CRASH_WORKER_PATH, TestBroker::Get().bootstrap(), group, topic, out});
    EXPECT_GT(pid, 0);
    if (pid <= 0) return crashes;
    for (;;) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) << "unexpected exit " << status;
        ++crashes;
        break;
      }
      const Progress p = ReadProgress(out);
      if (p.max_attempt.size() == static_cast<std::size_t>(innocents) && p.dead_lettered >= 1) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
        return crashes;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return crashes;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return crashes;
}

// The poison's five crashes, its dead letter, and the neighbours' bound: records in flight when
// the first crash came were charged once more; every later crash ran the poison alone in the
// worker, so it charged nobody else.
void ExpectPoisonDeadLetteredAndNeighboursChargedOnce(const std::string& group, const std::string& out,
                                                      int innocents, int crashes) {
  const Progress p = ReadProgress(out);
  ASSERT_EQ(p.max_attempt.size(), static_cast<std::size_t>(innocents))
      << "after " << crashes << " crashes: innocents handled; dead-lettered " << p.dead_lettered;
  ASSERT_GE(p.dead_lettered, 1);
  EXPECT_EQ(crashes, 5);  // five deliveries, each of which crashed the process
  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].payload, R"({"id":999,"tenant":"poison","body":""})");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "suspected-crash");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "5");
  int worst = 0;
  std::int64_t worst_id = -1;
  for (const auto& [id, attempt] : p.max_attempt) {
    if (attempt > worst) worst = attempt, worst_id = id;
  }
  EXPECT_LE(worst, 2) << "innocent record " << worst_id << " was charged for more than one crash";
  ::testing::Test::RecordProperty("crashes", crashes);
  ::testing::Test::RecordProperty("handled_lines", static_cast<int>(p.handled_lines));
  std::printf("poison: %d crashes, %zu handler runs for %d innocent records, worst delivery %d\n", crashes,
              p.handled_lines, innocents, worst);
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
  const int crashes = RunUntilDeadLettered(group, topic, out, kInnocents);
  ExpectPoisonDeadLetteredAndNeighboursChargedOnce(group, out, kInnocents, crashes);
}

// Neighbours on other partitions, still running (300 ms each) when the poison crashes: when
// suspects of different partitions ran side by side, each crash charged them again (an outside
// test saw an innocent record run 3 times).
TEST(Poison, NeighboursOnOtherPartitionsAreChargedForOneCrashAtMost) {
  const std::string topic = TestBroker::UniqueName("rb-poison-wide");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 4);
  const std::string out = testing::TempDir() + "/" + group + ".log";
  std::remove(out.c_str());

  // The poison heads partition 0; the other partitions' heads are slow innocents, so after a
  // crash each partition's first suspect is ready to run at the same time as the poison.
  constexpr int kInnocents = 20;
  kbus::kafka::Producer producer(it::ProducerConfig());
  kbus::OutgoingRecord poison = kbus::BuildRecord(it::Work{999, "poison", ""}, {.topic = topic, .key = "poison"});
  poison.partition = 0;
  ASSERT_TRUE(producer.SendSync(poison).ok());
  for (int i = 0; i < kInnocents; ++i) {
    kbus::OutgoingRecord r = kbus::BuildRecord(it::Work{i, "slow", ""}, {.topic = topic, .key = "k" + std::to_string(i)});
    r.partition = i % 4;
    ASSERT_TRUE(producer.Produce(r).ok());
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)).ok());
  const int crashes = RunUntilDeadLettered(group, topic, out, kInnocents);
  ExpectPoisonDeadLetteredAndNeighboursChargedOnce(group, out, kInnocents, crashes);
}

}  // namespace
