// The operations port (docs/operations.md): the kbus_workflow_* series and the health probe
// "workflow <name>", registered once by ReportTo; and Track, which keeps the per-partition
// counts the collector and the probe read. Tallied (host_impl.hpp) counts each step's result.

#include <stdexcept>

#include "host_impl.hpp"

namespace kbus::workflows {

namespace {

std::size_t StatusIndex(std::string_view status) {
  for (std::size_t i = 0; i < detail::kStatuses.size(); ++i) {
    if (detail::kStatuses[i] == status) return i;
  }
  return 0;
}

}  // namespace

void WorkflowHost::Impl::Track(Partition& p, const Record& in, int sign) {
  p.by_status[StatusIndex(in.status)] += sign;
  for (const Timeout& t : in.timeouts) {
    if (t.name != detail::kExpireTimeout && t.name != detail::kResultExpireTimeout) p.pending += sign;
  }
}

// The series are looked up here, once; a step only increments what `meters` points to. The
// gauges are set on collection, from the partitions' counts.
void WorkflowHost::Impl::ReportTo(metrics::Registry& registry, health::Board& board) {
  if (meters_owner) throw std::logic_error("WorkflowHost::ReportTo called twice");
  auto m = std::make_unique<Meters>();
  const std::string& w = spec.name;
  auto& steps = registry.AddCounter(
      "kbus_workflow_steps_total",
      "Messages and timeouts a workflow host handled, by message type and what became of them.",
      {"workflow", "type", "result"});
  auto add_route = [&](const std::string& type) {
    std::array<metrics::Counter*, detail::kStepResultCount> row{};
    for (std::size_t i = 0; i < detail::kStepResultCount; ++i) row[i] = &steps.With({w, type, detail::kStepResultNames[i]});
    m->steps.push_back(row);
  };
  for (const detail::Step& step : spec.steps) add_route(step.type);
  add_route(timeout_type);
  m->write_seconds = &registry
                          .AddHistogram("kbus_workflow_state_write_seconds",
                                        "State record writes, from the request to the store's acknowledgement.",
                                        {"workflow"}, metrics::DurationBuckets())
                          .With({w});
  m->write_errors = &registry
                         .AddCounter("kbus_workflow_state_write_errors_total",
                                     "State record writes that failed (the message is retried).", {"workflow"})
                         .With({w});
  m->load_seconds = &registry
                         .AddHistogram("kbus_workflow_state_load_seconds",
                                       "Loading one input partition's states on assignment, failed tries included.",
                                       {"workflow"}, metrics::DurationBuckets())
                         .With({w});
  m->load_errors = &registry
                        .AddCounter("kbus_workflow_state_load_errors_total",
                                    "Tries to load a partition's states that failed (tried again after 1 s).",
                                    {"workflow"})
                        .With({w});
  m->fired = &registry
                  .AddCounter("kbus_workflow_timeouts_fired_total",
                              "Timeout messages sent into the input topic (a re-fire counts again).", {"workflow"})
                  .With({w});
  auto& runs = registry.AddCounter("kbus_workflow_runs_total",
                                   "Workflow runs begun (started) and ended (completed, failed) here.",
                                   {"workflow", "result"});
  m->runs = {&runs.With({w, "started"}), &runs.With({w, "completed"}), &runs.With({w, "failed"})};
  auto& instances = registry.AddGauge(
      "kbus_workflow_instances",
      "Instances held in memory by status: those of the input partitions this host owns.",
      {"workflow", "status"});
  for (std::size_t i = 0; i < detail::kStatuses.size(); ++i) m->instances[i] = &instances.With({w, detail::kStatuses[i]});
  m->pending = &registry
                    .AddGauge("kbus_workflow_timeouts_pending",
                              "Timeouts requested and not yet run or cancelled, in the instances held here.",
                              {"workflow"})
                    .With({w});
  auto& owned = registry.AddGauge("kbus_workflow_partitions",
                                  "Input partitions owned, by whether their states are loaded.",
                                  {"workflow", "state"});
  m->loading = &owned.With({w, "loading"});
  m->ready = &owned.With({w, "ready"});
  m->collector = registry.OnCollect([this, meters_ptr = m.get()] { Collect(*meters_ptr); });
  m->probe = board.Add("workflow " + spec.name, [this] { return Probe(); });
  meters.store(m.get(), std::memory_order_release);
  meters_owner = std::move(m);
}

// Sets the gauges from the partitions' counts, when the registry is collected.
void WorkflowHost::Impl::Collect(Meters& m) const {
  std::array<std::int64_t, detail::kStatuses.size()> by_status{};
  std::int64_t pending = 0, loading = 0, ready = 0;
  {
    std::lock_guard lock(mu);
    for (const auto& [n, p] : partitions) {
      for (std::size_t i = 0; i < by_status.size(); ++i) by_status[i] += p->by_status[i];
      pending += p->pending;
      ++(p->ready ? ready : loading);
    }
  }
  for (std::size_t i = 0; i < by_status.size(); ++i) m.instances[i]->Set(static_cast<double>(by_status[i]));
  m.pending->Set(static_cast<double>(pending));
  m.loading->Set(static_cast<double>(loading));
  m.ready->Set(static_cast<double>(ready));
}

// Ready once every assigned partition is loaded (not while one loads, nor after Stop); live
// while the timer thread Start() began runs.
health::Report WorkflowHost::Impl::Probe() const {
  health::Report r;
  std::lock_guard lock(mu);
  std::int64_t ready = 0, running = 0, pending = 0, busy = 0;
  std::string loading, error;
  for (const auto& [n, p] : partitions) {
    busy += static_cast<std::int64_t>(p->busy.size());
    running += p->by_status[0];
    pending += p->pending;
    if (p->ready) {
      ++ready;
      continue;
    }
    loading += (loading.empty() ? "" : ", ") + std::to_string(n);
    if (!p->load_error.empty() && error.empty()) {
      error = "; partition " + std::to_string(n) + " failed " + std::to_string(p->load_attempts) +
              " time(s): " + p->load_error;
    }
  }
  if (timer_started && !timer_running.load() && !stopping) {
    r.live = false;
    r.reason = "the timer thread stopped";
  }
  if (stopping) {
    r.ready = false;
    r.reason = "the workflow host is stopped";
  } else if (!loading.empty()) {
    r.ready = false;
    if (r.reason.empty()) r.reason = "loading the state of input partitions " + loading + error;
  }
  r.active_work = busy;
  r.details = {{"partitions", static_cast<std::int64_t>(partitions.size())},
               {"partitions_loaded", ready},
               {"instances_running", running},
               {"timeouts_pending", pending}};
  return r;
}

}  // namespace kbus::workflows
