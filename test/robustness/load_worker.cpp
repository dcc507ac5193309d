// load_worker: a worker process for kill -9 tests. Its handler does ~100 µs of work per it::Work.
//   load_worker BROKERS GROUP TOPIC OUT_FILE
// Appends to OUT_FILE with write(2), so each line is on disk before the next record runs and
// survives a SIGKILL:
//   "handled <id> <attempt>"  after each handler run
//   "assigned <n>"            at start (0) and whenever the worker's partition count changes
//   "dead-lettered <n>"       whenever the worker's dead-letter count changes
// Runs until SIGTERM, then stops cleanly and exits 0.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>

#include "it_support.hpp"
#include "kbus/log.hpp"
#include "rb_support.hpp"

namespace {
std::atomic<bool> g_stop{false};
void OnTerm(int) { g_stop = true; }

void Append(int fd, const std::string& line) {
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
}

// Stands for a handler's real work: spins rather than sleeps, so it costs CPU as real work would.
void Work(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  const int out = ::open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return 2;
  std::signal(SIGTERM, OnTerm);
  // KBUS_LOAD_WORKER_INFO=1 logs commits refused, rebalances and shutdown, for a failing run.
  const char* info = std::getenv("KBUS_LOAD_WORKER_INFO");
  kbus::SetLogLevel(info != nullptr && *info == '1' ? kbus::LogLevel::kInfo : kbus::LogLevel::kWarn);

  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        Work(std::chrono::microseconds(100));
        Append(out, "handled " + std::to_string(w.id) + " " + std::to_string(ctx.attempt()) + "\n");
      },
      {.topic = argv[3]});
  kbus::kafka::Worker worker(rb::ChildWorkerConfig(argv[1], argv[2]), handlers);
  std::thread run([&] { worker.Run(); });
  Append(out, "assigned 0\n");
  std::uint32_t assigned = 0;
  std::uint64_t dead_lettered = 0;
  while (!g_stop) {
    const auto s = worker.Stats();
    if (s.assigned_partitions != assigned) {
      Append(out, "assigned " + std::to_string(assigned = s.assigned_partitions) + "\n");
    }
    if (s.dead_lettered != dead_lettered) {
      Append(out, "dead-lettered " + std::to_string(dead_lettered = s.dead_lettered) + "\n");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  worker.Stop();
  run.join();
  return 0;
}
