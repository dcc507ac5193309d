// kill -9 under load: three worker processes share a 6-partition topic while the test produces
// 50,000 commands; every kKillInterval one worker (round robin) is killed with SIGKILL and
// restarted at once. At-least-once means every command is handled at least once, whatever the
// kills hit; the delivery ledger means no command runs more than max_deliveries times.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>

#include "it_support.hpp"
#include "rb_support.hpp"


namespace {

using Clock = std::chrono::steady_clock;
using kbus::test::TestBroker;

// The shape of the run. Two minutes of kills on each broker keeps the binary near three minutes.
constexpr int kPartitions = 6;
constexpr int kWorkers = 3;
constexpr std::int64_t kCommands = 50'000;
constexpr auto kKillPhase = std::chrono::seconds(120);
constexpr auto kKillInterval = std::chrono::seconds(15);
// Production is spread over the kill phase, so every kill hits a group under load.
constexpr auto kProducePhase = kKillPhase;
constexpr std::int64_t kChunk = 500;
// The embedded broker keeps ~5 MiB per partition and silently drops older records. A command is
// a few hundred bytes with its headers, so the produced-but-unhandled backlog is capped well
// below what 6 partitions hold (checked at the end: every low watermark is still 0).
constexpr std::int64_t kMaxBacklog = 20'000;
// A takeover needs the dead member's session (6 s) to expire; the embedded broker then waits
// session.timeout − 1 s for the rebalance. Far more than that means the group is stuck.
constexpr auto kTakeoverDeadline = std::chrono::seconds(60);
constexpr auto kDrainDeadline = std::chrono::seconds(180);
constexpr int kMaxDeliveries = 5;  // WorkerConfig's default, which load_worker keeps

// What one worker process wrote, read incrementally: each call parses only the complete lines
// appended since the last call.
class WorkerLog {
 public:
  explicit WorkerLog(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  int assigned() const { return assigned_; }
  std::uint64_t dead_lettered() const { return dead_lettered_; }

  // `on_handled(id, attempt)` for each new "handled" line.
  template <class F>
  void Update(F&& on_handled) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return;  // not created yet
    in.seekg(offset_);
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset_ += static_cast<std::streamoff>(chunk.size());
    partial_ += chunk;
    std::size_t begin = 0;
    for (std::size_t nl; (nl = partial_.find('\n', begin)) != std::string::npos; begin = nl + 1) {
      std::istringstream line(partial_.substr(begin, nl - begin));
      std::string word;
      long long a = 0;
      long long b = 0;
      line >> word;
      if (word == "handled" && line >> a >> b) {
        on_handled(static_cast<std::int64_t>(a), static_cast<int>(b));
      } else if (word == "assigned" && line >> a) {
        assigned_ = static_cast<int>(a);
      } else if (word == "dead-lettered" && line >> a) {
        dead_lettered_ = static_cast<std::uint64_t>(a);
      }
    }
    partial_.erase(0, begin);
  }

 private:
  std::string path_;
  std::streamoff offset_ = 0;
  std::string partial_;
  int assigned_ = 0;
  std::uint64_t dead_lettered_ = 0;
};

// Runs per command id, from the union of every worker process's log.
struct Deliveries {
  std::vector<int> runs = std::vector<int>(kCommands, 0);
  // Attempt numbers seen per id, as a bit set (attempt 1..30): a repeated number means a
  // delivery count was lost.
  std::vector<std::uint32_t> attempts = std::vector<std::uint32_t>(kCommands, 0);
  std::int64_t distinct = 0;
  std::int64_t total = 0;
  std::int64_t out_of_range = 0;
  std::int64_t repeated_attempts = 0;

  void Add(std::int64_t id, int attempt) {
    if (id < 0 || id >= kCommands) {
      ++out_of_range;
      return;
    }
    const auto i = static_cast<std::size_t>(id);
    if (runs[i]++ == 0) ++distinct;
    ++total;
    const std::uint32_t bit = 1u << std::clamp(attempt, 0, 31);
    if (attempts[i] & bit) ++repeated_attempts;
    attempts[i] |= bit;
  }
};

// The worker processes: one slot each, and one log per process ever started, so that a killed
// process's last "assigned" line does not count for its replacement.
class Workers {
 public:
  Workers(std::string group, std::string topic, std::string dir)
      : group_(std::move(group)), topic_(std::move(topic)), dir_(std::move(dir)) {}
  ~Workers() {  // on an early test exit: leave no process behind
    for (Slot& s : slots_) {
      if (s.pid > 0) {
        kill(s.pid, SIGKILL);
        waitpid(s.pid, nullptr, 0);
      }
    }
  }

  bool Start(int slot) {
    if (static_cast<std::size_t>(slot) >= slots_.size()) slots_.resize(static_cast<std::size_t>(slot) + 1);
    const std::string path = dir_ + "/" + group_ + "-w" + std::to_string(slot) + "-" +
                             std::to_string(logs_.size()) + ".log";
    std::remove(path.c_str());
    logs_.emplace_back(path);
    Slot& s = slots_[static_cast<std::size_t>(slot)];
    s.log = logs_.size() - 1;
    s.pid = rb::Spawn({LOAD_WORKER_PATH, TestBroker::Get().bootstrap(), group_, topic_, path});
    return s.pid > 0;
  }

  // SIGKILL, reaped at once (a killed process cannot delay its exit).
  void Kill(int slot) {
    Slot& s = slots_[static_cast<std::size_t>(slot)];
    kill(s.pid, SIGKILL);
    waitpid(s.pid, nullptr, 0);
    s.pid = -1;
  }

  // Reads every log, and checks that no worker exited on its own. Returns an error text or "".
  std::string Poll(Deliveries& d) {
    for (WorkerLog& log : logs_) log.Update([&](std::int64_t id, int attempt) { d.Add(id, attempt); });
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      int status = 0;
      if (slots_[i].pid > 0 && waitpid(slots_[i].pid, &status, WNOHANG) == slots_[i].pid) {
        slots_[i].pid = -1;
        return "worker " + std::to_string(i) + " exited by itself, status " + std::to_string(status);
      }
    }
    return "";
  }

  // Partitions held by the running processes, by their own latest report.
  int Assigned() const {
    int n = 0;
    for (const Slot& s : slots_) n += s.pid > 0 ? logs_[s.log].assigned() : 0;
    return n;
  }
  bool AllHavePartitions() const {
    return std::all_of(slots_.begin(), slots_.end(),
                       [&](const Slot& s) { return s.pid > 0 && logs_[s.log].assigned() > 0; });
  }
  std::uint64_t DeadLettered() const {
    std::uint64_t n = 0;
    for (const WorkerLog& log : logs_) n += log.dead_lettered();
    return n;
  }

  // SIGTERM to all, then waits for clean exits. Returns the exit statuses that were not 0.
  std::vector<std::string> StopAll(std::chrono::seconds timeout) {
    for (Slot& s : slots_) kill(s.pid, SIGTERM);
    std::vector<std::string> bad;
    const auto deadline = Clock::now() + timeout;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      int status = 0;
      bool stopped = true;
      while (waitpid(s.pid, &status, WNOHANG) != s.pid) {
        if (Clock::now() > deadline) {
          kill(s.pid, SIGKILL);
          waitpid(s.pid, &status, 0);
          bad.push_back("worker " + std::to_string(i) + " did not stop within the timeout");
          stopped = false;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (stopped && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        bad.push_back("worker " + std::to_string(i) + " exited with status " + std::to_string(status));
      }
      s.pid = -1;
    }
    return bad;
  }

  std::size_t processes_started() const { return logs_.size(); }

 private:
  struct Slot {
    pid_t pid = -1;
    std::size_t log = 0;
  };
  std::string group_, topic_, dir_;
  std::vector<Slot> slots_;
  std::vector<WorkerLog> logs_;
};

// Sends commands 0..kCommands-1 on its own thread, spread over kProducePhase, and never more
// than kMaxBacklog ahead of what the workers have handled.
class PacedProducer {
 public:
  PacedProducer(std::string topic, const std::atomic<std::int64_t>& handled)
      : topic_(std::move(topic)), handled_(handled), thread_([this](std::stop_token st) { Run(st); }) {}
  std::int64_t produced() const { return produced_.load(); }
  bool done() const { return produced_.load() == kCommands; }
  std::string error() const {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  void Run(std::stop_token st) {
    kbus::kafka::Producer producer(it::ProducerConfig());
    const auto start = Clock::now();
    std::int64_t next = 0;
    while (next < kCommands && !st.stop_requested()) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const double share = std::min(1.0, elapsed / std::chrono::duration<double>(kProducePhase).count());
      std::int64_t target = std::min(kCommands, static_cast<std::int64_t>(share * kCommands));
      target = std::min(target, handled_.load() + kMaxBacklog);
      if (target - next < kChunk && target < kCommands) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pacing, not waiting
        continue;
      }
      for (; next < target; ++next) {
        kbus::Status s = producer.Produce(kbus::BuildRecord(
            it::Work{next, "tenant-" + std::to_string(next % 13), "x"}, {.topic = topic_}));
        if (!s.ok()) return Fail("produce " + std::to_string(next) + ": " + s.error().ToString());
      }
      if (kbus::Status s = producer.Flush(std::chrono::seconds(60)); !s.ok()) {
        return Fail("flush: " + s.error().ToString());
      }
      produced_.store(next);
    }
  }
  void Fail(std::string e) {
    std::lock_guard lock(mu_);
    error_ = std::move(e);
  }

  std::string topic_;
  const std::atomic<std::int64_t>& handled_;
  std::atomic<std::int64_t> produced_{0};
  mutable std::mutex mu_;
  std::string error_;
  std::jthread thread_;  // last: joined first, before the members it uses go
};

TEST(Kill, WorkersKilledUnderLoadLoseNoCommand) {
  const std::string topic = TestBroker::UniqueName("rb-kill");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, kPartitions);

  Workers workers(group, topic, testing::TempDir());
  Deliveries d;
  std::atomic<std::int64_t> handled{0};
  std::string failure;
  auto poll = [&] {
    if (failure.empty()) failure = workers.Poll(d);
    handled.store(d.distinct);
    return failure.empty();
  };
  // Polls every 20 ms until `done` or `timeout`; false also when a worker died by itself.
  auto wait = [&](const std::function<bool()>& done, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (poll()) {
      if (done()) return true;
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };

  for (int i = 0; i < kWorkers; ++i) ASSERT_TRUE(workers.Start(i)) << "cannot spawn " << LOAD_WORKER_PATH;
  ASSERT_TRUE(wait([&] { return workers.Assigned() == kPartitions && workers.AllHavePartitions(); },
                   std::chrono::seconds(60)))
      << "the group never settled with three members: " << failure;

  const auto start = Clock::now();
  PacedProducer producer(topic, handled);

  // Kill one worker every kKillInterval, round robin, restarting it at once; the next kill waits
  // until the survivors and the replacement hold every partition again.
  std::vector<double> takeovers;  // seconds from the kill until all partitions are held again
  int kills = 0;
  auto next_kill = start + kKillInterval;
  while (next_kill < start + kKillPhase) {
    ASSERT_TRUE(wait([&] { return Clock::now() >= next_kill; }, kKillInterval + std::chrono::seconds(1)))
        << failure;
    const int victim = kills % kWorkers;
    const auto killed_at = Clock::now();
    workers.Kill(victim);
    ASSERT_TRUE(workers.Start(victim));
    ++kills;
    const bool back = wait([&] { return workers.Assigned() == kPartitions; }, kTakeoverDeadline);
    ASSERT_TRUE(back) << "after kill " << kills << " the group did not hold all " << kPartitions
                      << " partitions again within " << kTakeoverDeadline.count() << " s (holds "
                      << workers.Assigned() << ") " << failure;
    takeovers.push_back(std::chrono::duration<double>(Clock::now() - killed_at).count());
    next_kill = std::max(killed_at + kKillInterval, Clock::now());
  }

  // Zero lost: every id in the union of the logs.
  const bool all = wait([&] { return producer.done() && d.distinct == kCommands; }, kDrainDeadline);
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(producer.error().empty()) << producer.error();
  if (!all) {
    std::string sample;
    int shown = 0;
    for (std::int64_t i = 0; i < kCommands && shown < 10; ++i) {
      if (d.runs[static_cast<std::size_t>(i)] == 0) sample += " " + std::to_string(i), ++shown;
    }
    FAIL() << "lost: " << kCommands - d.distinct << " of " << producer.produced()
           << " produced commands were never handled (first:" << sample << "); dead-lettered "
           << workers.DeadLettered() << "; " << failure;
  }
  const auto bad_exits = workers.StopAll(std::chrono::seconds(30));
  poll();
  for (const auto& b : bad_exits) ADD_FAILURE() << b;
  EXPECT_EQ(d.out_of_range, 0);
  EXPECT_EQ(workers.DeadLettered(), 0u) << "commands dead-lettered although no handler failed";

  // The embedded broker dropped nothing: every partition still starts at offset 0.
  const auto marks = rb::Watermarks(TestBroker::Get().bootstrap(), topic, kPartitions);
  std::int64_t stored = 0;
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(marks[static_cast<std::size_t>(p)].low, 0) << "partition " << p << " lost its oldest records";
    stored += marks[static_cast<std::size_t>(p)].high;
  }
  EXPECT_EQ(stored, kCommands);
  // Nothing held back: the clean stops committed every partition up to its end. Not on the
  // embedded broker: the three workers stop together, the first one's LeaveGroup starts a
  // rebalance, and the mock refuses the others' last commits ("Group rebalance in progress",
  // docs/testing.md), so the tail they handled since their last commit stays uncommitted (seen:
  // about 50-75 records on 4 of 6 partitions). Reported there instead.
  const auto committed = rb::Committed(TestBroker::Get().bootstrap(), group, topic, kPartitions);
  std::int64_t uncommitted = 0;
  for (int p = 0; p < kPartitions; ++p) {
    const std::int64_t end = marks[static_cast<std::size_t>(p)].high;
    const std::int64_t at = committed[static_cast<std::size_t>(p)];
    uncommitted += end - std::max<std::int64_t>(at, 0);
    if (!TestBroker::Get().embedded()) {
      EXPECT_EQ(at, end) << "partition " << p << " was not committed to its end";
    }
  }
  RecordProperty("uncommitted_at_stop", static_cast<int>(uncommitted));

  // Duplicates are allowed (at-least-once); the ledger bounds them per command. A run is a
  // delivery, and every delivery is counted in the ledger before it runs, across crashes and
  // rebalances; a command whose count reached max_deliveries is dead-lettered instead of run.
  // So no command runs more than max_deliveries times, and no two runs of one command carry the
  // same delivery number. (A kill repeats at most the wave leased by the last accepted commit, up
  // to 4,000 records per partition, and causes at most two rebalances, the replacement's join and
  // the dead member's expiry; in practice each repeats a few hundred records.)
  int worst = 0;
  std::int64_t repeated_ids = 0;
  for (int runs : d.runs) {
    worst = std::max(worst, runs);
    repeated_ids += runs > 1 ? 1 : 0;
  }
  EXPECT_LE(worst, kMaxDeliveries) << "a command ran more often than max_deliveries";
  EXPECT_EQ(d.repeated_attempts, 0) << "two runs of one command had the same delivery number: "
                                       "a delivery count was lost";

  const std::int64_t duplicates = d.total - d.distinct;
  double takeover_max = 0;
  double takeover_sum = 0;
  for (double t : takeovers) takeover_max = std::max(takeover_max, t), takeover_sum += t;
  const double takeover_mean = takeovers.empty() ? 0 : takeover_sum / static_cast<double>(takeovers.size());
  RecordProperty("kills", kills);
  RecordProperty("duplicates", static_cast<int>(duplicates));
  RecordProperty("commands_run_more_than_once", static_cast<int>(repeated_ids));
  RecordProperty("worst_runs_of_one_command", worst);
  RecordProperty("takeover_mean_ms", static_cast<int>(takeover_mean * 1000));
  RecordProperty("takeover_max_ms", static_cast<int>(takeover_max * 1000));
  RecordProperty("seconds", static_cast<int>(elapsed));
  std::printf("kill: %d kills, %lld commands, %lld runs: %lld duplicates (%lld commands ran more "
              "than once, worst %d runs), takeover mean %.1f s max %.1f s, all handled after %.0f s\n",
              kills, static_cast<long long>(kCommands), static_cast<long long>(d.total),
              static_cast<long long>(duplicates), static_cast<long long>(repeated_ids), worst,
              takeover_mean, takeover_max, elapsed);
  std::printf("kill: %lld records left uncommitted by the final stop\n", static_cast<long long>(uncommitted));
  std::printf("kill: takeovers (s):");
  for (double t : takeovers) std::printf(" %.1f", t);
  std::printf("\n");
}

}  // namespace
