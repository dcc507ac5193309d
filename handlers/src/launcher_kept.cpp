// Kept jobs, for a backend that keeps them (Backend::KeepsJobs): Adopt follows the jobs of
// newly assigned partitions that another launcher left running, LetGo leaves a revoked
// partition's jobs running for their next owner, Shutdown detaches (or, for a backend that keeps
// nothing, cancels) every job and waits for their threads. See launcher_impl.hpp for the
// invariants.

#include <algorithm>
#include <thread>

#include "kbus/log.hpp"
#include "launcher_impl.hpp"

namespace kbus::handlers {

namespace {

using detail::AttemptKey;
using detail::kLaunchLabel;
using detail::kPartitionLabel;
using detail::LaunchLabel;

}  // namespace

void Launcher::Impl::Adopt(const std::vector<std::string>& partitions) {
  if (!backend.KeepsJobs() || partitions.empty()) return;
  auto kept = backend.ListKept();
  if (!kept.ok()) {
    Log(LogLevel::kError, "kept jobs not listed: the running jobs of these partitions go unwatched",
        {{"backend", std::string(backend.name())}, {"error", kept.error().message()}});
    return;
  }
  for (KeptJob& k : kept.value()) {
    const auto part = k.labels.find(std::string(kPartitionLabel));
    if (part == k.labels.end() || std::find(partitions.begin(), partitions.end(), part->second) == partitions.end()) {
      continue;
    }
    if (!k.started) {
      // Created by a launcher that died before starting it: its command was not acknowledged
      // and comes again.
      backend.Forget(k.handle);
      continue;
    }
    const auto text = k.labels.find(std::string(kLaunchLabel));
    Result<LaunchLabel> label = text == k.labels.end()
                                    ? Result<LaunchLabel>(Error(ErrorCode::kDecode, "no kbus.launch label"))
                                    : FromJson<LaunchLabel>(text->second);
    if (!label.ok()) {
      Log(LogLevel::kError, "kept job not adopted: its labels do not say what it is",
          {{"handle", k.handle.substr(0, 12)}, {"error", label.error().message()}});
      continue;
    }
    AdoptOne(std::move(k), label.value(), part->second);
  }
}

void Launcher::Impl::AdoptOne(KeptJob kept, const LaunchLabel& label, const std::string& partition) {
  LaunchProcess cmd;
  cmd.job_id = label.job_id;
  cmd.attempt = label.attempt;
  cmd.program = label.program;
  cmd.reply_to = label.reply_to;
  cmd.run_timeout = std::chrono::milliseconds(label.run_timeout_ms);
  cmd.heartbeat_interval = std::chrono::milliseconds(label.heartbeat_ms);
  auto job = std::make_shared<Job>(cmd, label);
  job->partition = partition;
  if (auto spec = allow.Resolve(cmd.program, {}, {}); spec.ok()) job->spec = std::move(spec.value());
  job->spec.run_timeout = cmd.run_timeout;
  job->spec.kill_grace = config.kill_grace;
  // Event ids derive from the command's id and an index: an adopter's start far past the
  // indexes of the launchers before it, so that no event of it repeats an earlier id.
  job->next_index = static_cast<std::size_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count()) * 1000;
  job->start_known = job->started_answered = true;
  job->kept = std::move(kept);
  bool reported = false;
  {
    std::lock_guard lock(mu);
    const AttemptKey key{cmd.job_id, cmd.attempt};
    if (shut || running.count({cmd.job_id, cmd.attempt}) != 0) return;  // followed here already
    reported = finished.Contains(key);
  }
  if (reported) {
    backend.Forget(job->kept->handle);  // reported here; its removal failed then
    return;
  }
  {
    std::lock_guard lock(mu);
    const AttemptKey key{cmd.job_id, cmd.attempt};
    if (shut || running.count({cmd.job_id, cmd.attempt}) != 0) return;
    if (early_cancels.Contains({cmd.job_id, 0}) || early_cancels.Contains(key)) {
      job->cancel_reason = "cancelled while no launcher watched it";
      job->control.Cancel();
    }
    if (slots->TryTake()) job->slot = SlotHold(slots);  // a kept job runs even past the limit
    running[{cmd.job_id, cmd.attempt}] = job;
    ++threads;
    ++stats.adopted;
    ++stats.running;
  }
  if (Meters* m = meters.load(std::memory_order_acquire)) m->adopted->Inc();
  std::thread([this, job] { RunJob(job); }).detach();
}

void Launcher::Impl::LetGo(const std::vector<std::string>& partitions) {
  if (!backend.KeepsJobs()) return;
  std::unique_lock lock(mu);
  std::vector<JobPtr> going;
  for (auto& [key, job] : running) {
    if (std::find(partitions.begin(), partitions.end(), job->partition) == partitions.end()) continue;
    job->control.Detach();
    going.push_back(job);
  }
  cv.wait(lock, [&] {
    return std::none_of(going.begin(), going.end(), [&](const JobPtr& j) {
      auto it = running.find({j->command.job_id, j->command.attempt});
      return it != running.end() && it->second == j;
    });
  });
}

void Launcher::Impl::Shutdown() {
  std::unique_lock lock(mu);
  shut = true;
  for (auto& [key, job] : running) {
    job->stopping = true;
    if (backend.KeepsJobs()) {
      job->control.Detach();
    } else {
      job->control.Cancel();
    }
  }
  cv.wait(lock, [&] { return threads == 0; });
}

}  // namespace kbus::handlers
