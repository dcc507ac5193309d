// crash_worker: a worker whose handler abort()s the whole process on the "poison" tenant,
// never returns on the "stuck" tenant (ignoring its deadline and cancellation), and takes
// 300 ms on the "slow" tenant.
//   crash_worker BROKERS GROUP TOPIC OUT_FILE [VISIBILITY_MS MAX_DELIVERIES BACKOFF_MS]
// Every handled record appends "handled <id> <attempt>" to OUT_FILE with write(2) (the attempt
// as the handler sees it in its envelope: delivery_count + 1, kept across crashes), which
// survives the abort; "dead-lettered <n>" follows the worker's count. Runs until SIGTERM.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
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
}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 8) return 2;
  const int out = ::open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return 2;
  std::signal(SIGTERM, OnTerm);
  kbus::SetLogLevel(kbus::LogLevel::kWarn);

  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        if (w.tenant == "poison") std::abort();  // a bug that takes the process down
        if (w.tenant == "slow") {  // still running when a poison on another partition crashes
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
        }
        if (w.tenant == "stuck") {
          for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // a deadlock, say
        }
        Append(out, "handled " + std::to_string(w.id) + " " + std::to_string(ctx.envelope().delivery_count + 1) + "\n");
      },
      {.topic = argv[3]});
  auto config = rb::ChildWorkerConfig(argv[1], argv[2]);
  if (argc == 8) {
    config.visibility_timeout = std::chrono::milliseconds(std::stoll(argv[5]));
    config.max_deliveries = std::stoi(argv[6]);
    config.retry_backoff_initial = config.retry_backoff_max = std::chrono::milliseconds(std::stoll(argv[7]));
  }
  kbus::kafka::Worker worker(config, handlers);
  std::thread run([&] { worker.Run(); });
  std::uint64_t reported = 0;
  while (!g_stop) {
    const auto n = worker.Stats().dead_lettered;
    if (n != reported) Append(out, "dead-lettered " + std::to_string(reported = n) + "\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  worker.Stop();
  run.join();
  return 0;
}
