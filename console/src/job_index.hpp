#pragma once
// The console's view of launcher jobs, built from the launcher's events (ProcessStarted,
// ProcessHeartbeat, ProcessProgress, ProcessExited, docs/launcher.md) on the topics they are
// sent to: kbus.launcher.events and the input topics of the workflows that launch. One entry per
// (job id, attempt). Running attempts are all kept; finished ones up to a bound, the oldest
// forgotten first.
//
// Thread safety: every member may be called from any thread.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "answer.hpp"
#include "kbus/record.hpp"
#include "workflow_index.hpp"

namespace kbus::console {

class JobIndex {
 public:
  struct Limits {
    std::size_t finished = 10000;  // finished attempts kept
    // A running attempt with no event for this long is shown as silent (its launcher may be
    // gone; the workflow that launched it decides when it counts as lost).
    std::int64_t silent_after_ms = 60000;
  };
  explicit JobIndex(Limits limits);
  JobIndex() : JobIndex(Limits{}) {}

  // One record of an events topic; records that are not launcher events are ignored.
  void Add(const std::string& topic, std::int32_t partition, std::int64_t offset, std::int64_t timestamp_ms,
           std::string_view key, std::string_view value, const std::vector<HeaderView>& headers);

  // GET /api/jobs, /api/job.
  Answer Jobs(const Params& params, std::int64_t now_ms) const;
  Answer Job(const Params& params, const RecordFetch& fetch, std::int64_t now_ms) const;

  // Where to send a cancel: the key the job's events carry (the launch's key), if known.
  std::optional<std::string> LaunchKey(const std::string& job_id) const;

  struct Counts {
    std::size_t running = 0, succeeded = 0, failed = 0;
  };
  Counts Totals() const;
  std::size_t size() const;

 private:
  struct Entry {
    std::string job_id;
    int attempt = 0;
    std::string program, host, topic, workflow_id, key;
    std::int64_t pid = 0;
    bool exited = false;
    int percent = -1;
    std::string message;
    std::int64_t started_ms = 0, updated_ms = 0, exited_ms = 0;
    std::string outcome, error;
    int exit_code = -1, signal = 0;
    std::int64_t duration_ms = 0;
    bool has_result = false;
    std::int32_t partition = -1;  // of the ProcessExited record, to read its result back
    std::int64_t offset = -1;
    std::int64_t running_key = -1;  // its key in running_, -1 when not in it
  };
  using JobKey = std::pair<std::string, int>;  // (job id, attempt)

  void WriteEntry(JsonWriter& w, const Entry& e, std::int64_t now_ms) const;
  // Moves a running attempt to the finished ones.
  void Finish(Entry& e, const JobKey& key);

  Limits limits_;
  mutable std::shared_mutex mu_;
  std::map<JobKey, Entry> jobs_;
  std::set<std::pair<std::int64_t, JobKey>> running_;  // (started_ms, job): oldest first
  std::deque<JobKey> finished_;                        // in the order they finished
  std::size_t succeeded_ = 0, failed_ = 0;
};

}  // namespace kbus::console
