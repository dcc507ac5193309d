// The operations port (docs/operations.md): the kbus_launcher_* series and the health probe
// "launcher", registered once by ReportTo, and the Count* helpers the handlers and job threads
// call. See launcher_impl.hpp for the invariants.

#include <stdexcept>

#include "launcher_impl.hpp"

namespace kbus::handlers {

namespace {

using detail::kExitOutcomes;
using detail::kRefusalCount;
using detail::kRefusalNames;
using detail::Shown;

// A job this long past its run_timeout (beyond twice the kill grace) has a stuck supervisor.
constexpr std::chrono::seconds kStuckMargin{60};

}  // namespace

void Launcher::Impl::CountRefusal(detail::Refusal why) {
  if (Meters* m = meters.load(std::memory_order_acquire)) m->refused[why]->Inc();
}

void Launcher::Impl::CountLaunch(std::string_view program) {
  Meters* m = meters.load(std::memory_order_acquire);
  if (m == nullptr) return;
  if (auto it = m->programs.find(program); it != m->programs.end()) it->second.launches->Inc();
}

void Launcher::Impl::CountExit(std::string_view program, std::string_view outcome, const ProcessResult* ran) {
  Meters* m = meters.load(std::memory_order_acquire);
  if (m == nullptr) return;
  auto it = m->programs.find(program);
  if (it == m->programs.end()) return;
  for (std::size_t i = 0; i < kExitOutcomes.size(); ++i) {
    if (kExitOutcomes[i] == outcome) it->second.exits[i]->Inc();
  }
  if (ran != nullptr) it->second.duration->Observe(std::chrono::duration<double>(ran->duration).count());
}

health::Report Launcher::Impl::Probe() const {
  health::Report r;
  const auto now = Job::Clock::now();
  std::lock_guard lock(mu);
  for (const auto& [key, job] : running) {
    const auto limit = job->command.run_timeout;
    if (limit.count() <= 0) continue;
    if (now - job->accepted_at > limit + 2 * config.kill_grace + kStuckMargin) {
      r.live = false;
      r.reason = "job '" + Shown(key.first) + "' attempt " + std::to_string(key.second) +
                 " has run past its run_timeout by more than twice the kill grace and a minute: "
                 "its supervision is stuck";
      break;
    }
  }
  if (shut) {
    r.ready = false;
    if (r.reason.empty()) r.reason = "the launcher is shutting down";
  }
  r.active_work = stats.running;
  r.details = {{"running", std::int64_t{stats.running}},
               {"max_processes", std::int64_t{config.max_processes}},
               {"host", config.host}};
  return r;
}

void Launcher::Impl::ReportTo(metrics::Registry& registry, health::Board& board) {
  if (meters_owner) throw std::logic_error("Launcher::ReportTo called twice");
  auto m = std::make_unique<Meters>();
  auto& launches = registry.AddCounter("kbus_launcher_launches_total",
                                       "Processes the launcher began to start, by allow-list program.", {"program"});
  auto& exits = registry.AddCounter(
      "kbus_launcher_exits_total",
      "Launched processes that ended, by allow-list program and the outcome their ProcessExited reported.",
      {"program", "outcome"});
  auto& duration = registry.AddHistogram("kbus_launcher_process_duration_seconds",
                                         "How long launched processes ran, from start to exit, by program.",
                                         {"program"}, metrics::LongDurationBuckets());
  for (const auto& [name, program] : allow.programs()) {
    Meters::Program& p = m->programs[name];
    p.launches = &launches.With({name});
    for (std::size_t i = 0; i < kExitOutcomes.size(); ++i) p.exits[i] = &exits.With({name, kExitOutcomes[i]});
    p.duration = &duration.With({name});
  }
  auto& refused = registry.AddCounter(
      "kbus_launcher_refused_total",
      "LaunchProcess commands that started nothing, by reason (dead-lettered, reported launch_failed, "
      "duplicates, cancelled before they started).",
      {"reason"});
  for (std::size_t i = 0; i < kRefusalCount; ++i) m->refused[i] = &refused.With({kRefusalNames[i]});
  m->running = &registry.AddGauge("kbus_launcher_processes_running", "Processes running now.").With({});
  m->adopted = &registry
                    .AddCounter("kbus_launcher_adopted_total",
                                "Kept jobs (containers) this launcher followed after a restart or a rebalance.")
                    .With({});
  m->left_running = &registry
                         .AddCounter("kbus_launcher_left_running_total",
                                     "Kept jobs this launcher let go of, still running, at a revoke or its shutdown.")
                         .With({});
  registry.AddGauge("kbus_launcher_max_processes", "Processes the launcher runs at once at most (--max-processes).")
      .With({})
      .Set(config.max_processes);
  m->collector = registry.OnCollect([this, g = m->running] {
    std::lock_guard lock(mu);
    g->Set(stats.running);
  });
  m->probe = board.Add("launcher", [this] { return Probe(); });
  meters.store(m.get(), std::memory_order_release);
  meters_owner = std::move(m);
}

}  // namespace kbus::handlers
