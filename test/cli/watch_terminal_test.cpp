// kbus watch in a real terminal (tmux): one line per running job, redrawn in place, with the
// starts and exits kept above; the screen is read back with `tmux capture-pane`.

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "kbus/context.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/kafka/producer.hpp"
#include "test_broker.hpp"

namespace {

using kbus::test::ChildProcess;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using namespace std::chrono_literals;

// A tmux server of the test's own (its socket name is unique), one 100x30 window running `cmd`.
class Terminal {
 public:
  explicit Terminal(const std::string& cmd) : socket_(TestBroker::UniqueName("kbus-watch-tty")) {
    Tmux({"new-session", "-d", "-x", "100", "-y", "30", "-s", "w", cmd});
  }
  ~Terminal() { Tmux({"kill-server"}); }
  std::vector<std::string> Screen() {
    std::vector<std::string> lines;
    std::istringstream in(Tmux({"capture-pane", "-p", "-t", "w"}));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(line);
    }
    return lines;
  }

 private:
  std::string Tmux(std::vector<std::string> args) {
    args.insert(args.begin(), {"tmux", "-L", socket_});
    ChildProcess p(args, {"TERM=xterm-256color"});
    auto r = p.Wait(10s);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    return r.out;
  }
  std::string socket_;
};

std::size_t CountStarting(const std::vector<std::string>& lines, const std::string& prefix) {
  return static_cast<std::size_t>(
      std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
}

std::string Dump(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(KbusWatchTerminal, OneLinePerRunningJobRedrawnInPlaceWithStartsAndExitsAbove) {
  const std::string topic = TestBroker::UniqueName("watch-tty");
  TestBroker::Get().CreateTopic(topic, 1);
  kbus::kafka::Producer producer(kbus::kafka::ProducerConfig{.client = {.brokers = TestBroker::Get().bootstrap()}});
  auto send = [&](const auto& event) {
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(event, {.topic = topic, .key = event.job_id})).ok());
  };
  Terminal tty(std::string(KBUS_CLI_PATH) + " watch --brokers " + TestBroker::Get().bootstrap() + " --topic " + topic);

  for (const char* job : {"job-a", "job-b", "job-c"}) send(kbus::handlers::ProcessStarted{job, 1, "fake-encoder", 100, "h1"});
  for (int percent = 10; percent <= 60; percent += 10) {
    send(kbus::handlers::ProcessProgress{"job-a", 1, percent, "pass " + std::to_string(percent)});
    send(kbus::handlers::ProcessProgress{"job-b", 1, percent / 2, "scan"});
    send(kbus::handlers::ProcessProgress{"job-c", 1, percent / 3, "copy"});
  }
  kbus::handlers::ProcessExited exited;
  exited.job_id = "job-b";
  exited.attempt = 1;
  exited.outcome = "succeeded";
  exited.exit_code = 0;
  exited.duration = 2500ms;
  send(exited);
  send(kbus::handlers::ProcessHeartbeat{"job-c", 1, 75000ms, 20});

  std::vector<std::string> screen;
  ASSERT_TRUE(WaitFor([&] {
    screen = tty.Screen();
    return CountStarting(screen, "job-c attempt 1 [") == 1 && !screen.empty() && screen.back().find("01:15") != std::string::npos;
  }, 30s)) << "the last event is drawn:\n" << Dump(screen);

  // One line per running job, however many events it had: redrawn, not appended.
  EXPECT_EQ(CountStarting(screen, "job-a attempt 1 ["), 1u) << Dump(screen);
  EXPECT_EQ(CountStarting(screen, "job-c attempt 1 ["), 1u) << Dump(screen);
  EXPECT_EQ(CountStarting(screen, "job-b attempt 1 ["), 0u) << "a finished job has no bar:\n" << Dump(screen);
  ASSERT_EQ(screen.size(), 6u) << "three starts, one exit, two bars:\n" << Dump(screen);
  EXPECT_EQ(screen[0], "job-a attempt 1 started pid 100 on h1");
  EXPECT_EQ(screen[1], "job-b attempt 1 started pid 100 on h1");
  EXPECT_EQ(screen[2], "job-c attempt 1 started pid 100 on h1");
  EXPECT_EQ(screen[3], "job-b attempt 1 exited succeeded exit_code 0 after 2.5s");
  EXPECT_EQ(screen[4], "job-a attempt 1 [" + std::string(18, '#') + std::string(12, '-') + "]  60% pass 60  00:00");
  EXPECT_EQ(screen[5], "job-c attempt 1 [" + std::string(6, '#') + std::string(24, '-') + "]  20% copy  01:15");
}

}  // namespace
