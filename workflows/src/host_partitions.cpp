// Input partitions given to and taken from the host: each assignment loads its state partition
// on a thread of its own, and its messages wait (WaitReady) until that load succeeds. Called
// from the worker's rebalance hooks (OnAssigned, OnRevoked) and its handler threads
// (WaitReady); see host_impl.hpp for the invariants.

#include <algorithm>
#include <iterator>

#include "host_impl.hpp"
#include "kbus/log.hpp"

namespace kbus::workflows {

void WorkflowHost::Impl::OnAssigned(const std::vector<std::int32_t>& numbers) {
  std::vector<Loader> finished;
  {
    std::lock_guard lock(mu);
    // Loaders of earlier assignments that are done: joined here, so a long life of
    // rebalances does not pile up threads.
    auto done = std::partition(loaders.begin(), loaders.end(), [](const Loader& l) { return !l.done->load(); });
    std::move(done, loaders.end(), std::back_inserter(finished));
    loaders.erase(done, loaders.end());
    for (std::int32_t n : numbers) {
      auto p = std::make_shared<Partition>();
      p->number = n;
      p->epoch = next_epoch++;
      if (auto old = partitions.find(n); old != partitions.end()) old->second->revoked = true;
      partitions[n] = p;
      Loader l;
      l.thread = std::thread([this, p, done = l.done] {
        Load(p);
        done->store(true);
      });
      loaders.push_back(std::move(l));
    }
  }
  for (Loader& l : finished) l.thread.join();
}

// The partition's instances leave memory at once; steps and write-ahead verdicts still holding
// it see `revoked` and change nothing.
void WorkflowHost::Impl::OnRevoked(const std::vector<std::int32_t>& numbers) {
  std::lock_guard lock(mu);
  for (std::int32_t n : numbers) {
    auto it = partitions.find(n);
    if (it == partitions.end()) continue;
    it->second->revoked = true;
    stats.instances -= it->second->instances.size();
    partitions.erase(it);
  }
  cv.notify_all();
}

// Reads every record of the state partition, then installs them all at once and marks the
// partition ready. A record that does not decode (or whose id is not its key) is logged and
// skipped; a failed read is tried again after a second, until revoked or stopped.
void WorkflowHost::Impl::Load(const PartitionPtr& p) {
  const auto began = std::chrono::steady_clock::now();
  for (int attempt = 1;; ++attempt) {
    {
      std::lock_guard lock(mu);
      if (p->revoked || stopping) return;
    }
    std::unordered_map<std::string, Record> loaded;
    std::size_t bad = 0;
    Status s = store.Load(p->number, [&](std::string_view key, std::string_view value) {
      Result<Record> in = detail::Decode(value);
      if (!in.ok() || in->id != key) {
        ++bad;
        Log(LogLevel::kError, "workflow state record unreadable, skipped",
            {{"workflow", spec.name}, {"partition", p->number}, {"workflow_id", key},
             {"error", in.ok() ? std::string("its id is not its key") : in.error().message()}});
        return;
      }
      loaded.insert_or_assign(std::string(key), std::move(*in));
    });
    if (s.ok()) {
      std::lock_guard lock(mu);
      if (p->revoked) return;
      for (auto& [id, in] : loaded) {
        for (const Timeout& t : in.timeouts) p->timers.insert(detail::TimerKey{t.due_ms, id, t.id});
        Track(*p, in, +1);
      }
      if (Meters* m = M()) m->load_seconds->Observe(detail::SecondsSince(began));
      stats.instances += loaded.size();
      p->instances = std::move(loaded);
      p->ready = true;
      cv.notify_all();
      timer_cv.notify_all();
      Log(LogLevel::kInfo, "workflow states loaded",
          {{"workflow", spec.name}, {"partition", p->number}, {"instances", p->instances.size()},
           {"unreadable", bad}});
      return;
    }
    Log(LogLevel::kError, "workflow states not loaded, trying again",
        {{"workflow", spec.name}, {"partition", p->number}, {"attempt", attempt}, {"error", s.error().message()}});
    if (Meters* m = M()) m->load_errors->Inc();
    std::unique_lock lock(mu);
    p->load_attempts = attempt;
    p->load_error = s.error().message();
    cv.wait_for(lock, std::chrono::seconds(1), [&] { return p->revoked || stopping; });
  }
}

WorkflowHost::Impl::PartitionPtr WorkflowHost::Impl::WaitReady(std::int32_t number, Context& ctx) {
  std::unique_lock lock(mu);
  for (;;) {
    auto it = partitions.find(number);
    if (it == partitions.end() || stopping || ctx.Cancelled()) return nullptr;
    if (it->second->ready) return it->second;
    cv.wait_for(lock, std::chrono::milliseconds(200));
  }
}

}  // namespace kbus::workflows
