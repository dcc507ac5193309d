// kbus-launcher-bench: what the launcher costs, on the embedded broker, with the kbus-launcher
// program as a separate process (so its CPU and memory are its own).
//
//   kbus-launcher-bench --launcher PATH            full run (the sizes)
//   kbus-launcher-bench --launcher PATH --quick    smoke test (ctest label "bench")
//
// 1. Launch rate: N launches of /bin/true, each from sending its LaunchProcess to receiving its
//    ProcessExited, against a plain posix_spawn + waitpid loop of /bin/true in this process;
//    prints launches/s of both and the ratio launcher/plain. (The launcher's default of 8
//    processes at once; the commands are sent all at once after one warm-up launch, so the group
//    join is not counted.)
// 2. Idle cost: M concurrent `sleep` jobs with heartbeats every 5 s: the launcher's CPU use
//    (from /proc/PID/stat) over a window while they all run, and its resident memory.
// 3. Backlog: B launches queued for a launcher with --max-processes 4: its resident memory once
//    it has taken what it can (it pauses its partitions), and that only 4 ran.
// Exits 1 when a check fails (every launch seen, no fifth process) or a step times out.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>

#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"

extern "C" char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessStarted;

pid_t Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Counts the launcher's events on a topic.
struct Observer {
  std::atomic<int> started{0}, exited{0}, heartbeats{0}, failed{0};
  kbus::HandlerRegistry handlers;
  std::unique_ptr<kbus::kafka::Worker> worker;
  std::thread thread;

  Observer(const std::string& brokers, const std::string& topic, const std::string& group) {
    kbus::HandlerOptions o;
    o.topic = topic;
    handlers.Handle<ProcessStarted>([this](const ProcessStarted&, kbus::Context&) { ++started; }, o);
    handlers.Handle<ProcessHeartbeat>([this](const ProcessHeartbeat&, kbus::Context&) { ++heartbeats; }, o);
    handlers.Handle<ProcessExited>(
        [this](const ProcessExited& e, kbus::Context&) {
          if (e.outcome != "succeeded" && e.outcome != "lost") ++failed;
          ++exited;
        },
        o);
    kbus::kafka::WorkerConfig c;
    c.client.brokers = brokers;
    c.group = group;
    c.fetch_wait_max = std::chrono::milliseconds(10);
    worker = std::make_unique<kbus::kafka::Worker>(c, handlers);
    thread = std::thread([this] { worker->Run(); });
  }
  ~Observer() {
    worker->Stop();
    thread.join();
  }
};

void Must(const kbus::Status& s, const std::string& what) {
  if (s.ok()) return;
  std::cerr << "kbus-launcher-bench: " << what << ": " << s.error().message() << "\n";
  std::exit(1);
}

bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

struct Bench {
  std::string launcher_path;
  kbus::kafka::EmbeddedBroker& broker;
  kbus::kafka::Producer producer;
  std::filesystem::path allow = std::filesystem::temp_directory_path() / ("kbus-bench-allow-" + std::to_string(getpid()));
  int run = 0;

  Bench(std::string path, kbus::kafka::EmbeddedBroker& b)
      : launcher_path(std::move(path)), broker(b), producer([&] {
          kbus::kafka::ProducerConfig pc;
          pc.client.brokers = b.bootstrap();
          return pc;
        }()) {
    std::ofstream(allow) << "true = /bin/true\nsleep = /bin/sleep\n";
  }
  ~Bench() { std::filesystem::remove(allow); }

  struct Topics {
    std::string launch, control, events, group;
  };
  Topics NewTopics(int partitions) {
    ++run;
    Topics t{"bench.launch." + std::to_string(run), "bench.control." + std::to_string(run),
             "bench.events." + std::to_string(run), "bench-launcher-" + std::to_string(run)};
    for (const auto& name : {t.launch, t.control}) Must(broker.CreateTopic(name, partitions), "create " + name);
    Must(broker.CreateTopic(t.events, 4), "create " + t.events);
    return t;
  }
  pid_t StartLauncher(const Topics& t, int max_processes) {
    return Spawn({launcher_path, "--brokers", broker.bootstrap(), "--group", t.group, "--allow-list",
                  allow.string(), "--launch-topic", t.launch, "--control-topic", t.control,
                  "--max-processes", std::to_string(max_processes), "--kill-grace-ms", "1000", "--reply-topics", "bench.events.*",
                  "--log-level", "error"});
  }
  void Send(const Topics& t, const std::string& job, const std::string& program, std::vector<std::string> args,
            std::chrono::milliseconds heartbeat = std::chrono::milliseconds(0), bool sync = false) {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.program = program;
    cmd.args = std::move(args);
    cmd.heartbeat_interval = heartbeat;
    cmd.reply_to = t.events;
    const auto record = kbus::BuildRecord(cmd, {.topic = t.launch, .key = job});
    if (sync) return Must(producer.SendSync(record), "send " + job);
    kbus::Status queued = producer.Produce(record);
    for (int i = 0; !queued.ok() && i < 1000; ++i) {  // the producer's queue is full: let it drain
      producer.Poll(std::chrono::milliseconds(10));
      queued = producer.Produce(record);
    }
    Must(queued, "queue " + job);
  }
  // SIGTERM, then up to 60 s for the launcher to exit; a launcher that does not is killed and
  // reported (-1), rather than hanging the benchmark.
  static int Stop(pid_t pid) {
    kill(pid, SIGTERM);
    int status = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        std::cerr << "kbus-launcher-bench: the launcher did not exit within 60 s of SIGTERM\n";
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

double PlainSpawnRate(int n) {
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    const pid_t pid = Spawn({"/bin/true"});
    int status = 0;
    waitpid(pid, &status, 0);
  }
  return n / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string launcher;
  bool quick = false;
  po::options_description desc("kbus-launcher-bench options");
  desc.add_options()("launcher", po::value(&launcher)->required(), "path of kbus-launcher")(
      "quick", po::bool_switch(&quick), "smoke test sizes");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "kbus-launcher-bench: " << e.what() << "\n";
    return 2;
  }
  const int launches = quick ? 200 : 2000;
  const int sleepers = quick ? 20 : 500;
  const int idle_window_s = quick ? 3 : 20;
  const int backlog = quick ? 2000 : 100000;

  kbus::kafka::EmbeddedBroker broker;
  Bench bench(launcher, broker);
  bool ok = true;

  // 1. Launch rate.
  {
    const double plain = PlainSpawnRate(launches);
    auto t = bench.NewTopics(4);
    Observer obs(broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, 8);
    bench.Send(t, "warm-up", "true", {}, {}, true);
    if (!WaitUntil([&] { return obs.exited == 1; }, std::chrono::seconds(60))) {
      std::cerr << "the warm-up launch never exited\n";
      return 1;
    }
    const auto start = Clock::now();
    for (int i = 0; i < launches; ++i) bench.Send(t, "true-" + std::to_string(i), "true", {});
    if (!WaitUntil([&] { return obs.exited == launches + 1; }, std::chrono::seconds(quick ? 100 : 300))) {
      ok = false;
      std::cerr << "launch rate: " << obs.started.load() << " started, " << obs.exited.load() << " exited of "
                << launches + 1 << " launched\n";
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double rate = obs.exited.load() > 1 ? (obs.exited - 1) / seconds : 0;
    ok &= obs.failed == 0;
    std::printf("launch rate: %d launches of /bin/true: launcher %.0f/s (launch to Exited event), "
                "plain posix_spawn+waitpid %.0f/s, ratio %.3f\n",
                launches, rate, plain, rate / plain);
    ok &= Bench::Stop(pid) == 0;
  }

  // 2. Idle cost of many sleeping jobs.
  {
    auto t = bench.NewTopics(4);
    Observer obs(broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, sleepers);
    const std::string secs = std::to_string(idle_window_s + 10);
    for (int i = 0; i < sleepers; ++i) {
      bench.Send(t, "sleep-" + std::to_string(i), "sleep", {secs}, std::chrono::seconds(5));
    }
    ok &= WaitUntil([&] { return obs.started == sleepers; }, std::chrono::seconds(120));
    const double cpu0 = CpuSeconds(pid);
    const int beats0 = obs.heartbeats;
    std::this_thread::sleep_for(std::chrono::seconds(idle_window_s));
    const double cpu = CpuSeconds(pid) - cpu0;
    const long rss = RssKib(pid);
    std::printf("idle cost: %d concurrent sleep jobs, heartbeats every 5 s: launcher CPU %.3f s over "
                "%d s (%.2f%% of a core), %d heartbeats received, resident memory %.1f MiB\n",
                obs.started.load(), cpu, idle_window_s, 100 * cpu / idle_window_s, obs.heartbeats - beats0,
                rss / 1024.0);
    ok &= Bench::Stop(pid) == 0;
  }

  // 3. A backlog for a launcher that can take 4.
  {
    auto t = bench.NewTopics(16);
    Observer obs(broker.bootstrap(), t.events, t.group + "-obs");
    for (int i = 0; i < backlog; ++i) bench.Send(t, "queued-" + std::to_string(i), "sleep", {"60"});
    Must(bench.producer.Flush(std::chrono::seconds(60)), "flush the backlog");
    const pid_t pid = bench.StartLauncher(t, 4);
    ok &= WaitUntil([&] { return obs.started == 4; }, std::chrono::seconds(60));
    std::this_thread::sleep_for(std::chrono::seconds(quick ? 2 : 10));
    const long rss = RssKib(pid);
    std::printf("backlog: %d launches queued, --max-processes 4: %d started, resident memory %.1f MiB\n",
                backlog, obs.started.load(), rss / 1024.0);
    ok &= obs.started == 4;
    ok &= Bench::Stop(pid) == 0;
  }
  std::printf("%s\n", ok ? "all checks passed" : "CHECKS FAILED");
  return ok ? 0 : 1;
}
