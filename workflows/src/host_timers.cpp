// Timeouts: the timer thread (Start) or the test kit (FireDue) sends a due timeout as a message
// into the input topic, keyed by its workflow id, so that it runs through Process like any
// message and one at a time with the instance's others. A timeout sent and not yet run is not
// sent again before refire_after. Expire removes a finished instance once its retention ends.
// See host_impl.hpp for the invariants.

#include <exception>

#include "host_impl.hpp"
#include "kbus/log.hpp"

namespace kbus::workflows {

int WorkflowHost::Impl::FireDue() {
  struct Due {
    std::string id, timeout_id, name, correlation_id;
    std::int64_t due_ms;
  };
  std::vector<Due> due;
  const std::int64_t now = config.now_ms();
  {
    std::lock_guard lock(mu);
    for (auto& [n, p] : partitions) {
      if (!p->ready) continue;
      for (const detail::TimerKey& k : p->timers) {
        if (k.due_ms > now) break;
        auto fired = p->fired.find({k.workflow_id, k.timeout_id});
        if (fired != p->fired.end() && now - fired->second < config.refire_after.count()) continue;
        auto in = p->instances.find(k.workflow_id);
        if (in == p->instances.end()) continue;
        std::string name;
        for (const Timeout& t : in->second.timeouts) {
          if (t.id == k.timeout_id) name = t.name;
        }
        p->fired[{k.workflow_id, k.timeout_id}] = now;
        due.push_back(Due{k.workflow_id, k.timeout_id, std::move(name), in->second.correlation_id, k.due_ms});
      }
    }
  }
  // Sent outside the lock: config.send waits for the broker.
  int sent = 0;
  for (const Due& d : due) {
    SendOptions options;
    options.topic = spec.options.input_topic;
    options.key = d.id;
    options.workflow_id = d.id;
    options.correlation_id = d.correlation_id;
    OutgoingRecord r = BuildRecord(timeout_type, MessageKind::kCommand, spec.options.input_topic,
                                   ToJson(detail::TimeoutMessage{d.timeout_id, d.name, d.due_ms}), std::move(options),
                                   nullptr, 0);
    if (!config.send) break;
    if (Status s = config.send(r); !s.ok()) {
      Log(LogLevel::kWarn, "workflow timeout not sent, will try again",
          {{"workflow", spec.name}, {"workflow_id", d.id}, {"timeout", d.name}, {"error", s.error().message()}});
      std::lock_guard lock(mu);
      for (auto& [n, p] : partitions) p->fired.erase({d.id, d.timeout_id});
      continue;
    }
    ++sent;
  }
  if (sent > 0) Count([&](HostStats& s) { s.timeouts_fired += static_cast<std::uint64_t>(sent); });
  if (Meters* m = M(); m != nullptr && sent > 0) m->fired->Inc(static_cast<std::uint64_t>(sent));
  return sent;
}

void WorkflowHost::Impl::TimerLoop() {
  struct Running {  // set by Start()
    std::atomic<bool>& flag;
    ~Running() { flag.store(false); }
  } running{timer_running};
  std::unique_lock lock(mu);
  while (!stopping) {
    lock.unlock();
    try {
      FireDue();
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "workflow timer failed", {{"workflow", spec.name}, {"error", e.what()}});
    }
    lock.lock();
    timer_cv.wait_for(lock, config.timer_tick, [&] { return stopping; });
  }
}

// Called from Process with the instance's busy mark held.
Outcome WorkflowHost::Impl::Expire(const PartitionPtr& p, const Record& current, Context&) {
  if (!current.finished()) return Ack();
  {
    std::lock_guard lock(mu);
    if (p->revoked) return Retry(std::chrono::milliseconds(500), "input partition revoked meanwhile");
  }
  if (Status s = store.Erase(p->number, current.id); !s.ok()) {
    return Retry(std::chrono::milliseconds(500), "the workflow state was not removed: " + s.error().message());
  }
  std::lock_guard lock(mu);
  for (const Timeout& t : current.timeouts) {
    p->timers.erase(detail::TimerKey{t.due_ms, current.id, t.id});
    p->fired.erase({current.id, t.id});
  }
  if (auto held = p->instances.find(current.id); held != p->instances.end()) {
    Track(*p, held->second, -1);
    p->instances.erase(held);
    --stats.instances;
  }
  ++stats.expired;
  return Ack();
}

}  // namespace kbus::workflows
