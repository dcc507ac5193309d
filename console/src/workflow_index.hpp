#pragma once
// The console's view of workflow instances, built from the state topics ("<name>.state", one
// record per workflow id, docs/workflows.md "The state record"). It keeps a small summary per
// instance and where its latest record is; the full record (state, result) is read back from
// the topic when one instance is asked for, so memory grows with the number of instances, not
// with the size of their states.
//
// Thread safety: every member may be called from any thread.

#include <array>
#include <cstdint>
#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "answer.hpp"
#include "kbus/result.hpp"

namespace kbus::console {

// Reads the record at topic/partition/offset (its value), for the detail views.
using RecordFetch =
    std::function<Result<std::string>(const std::string& topic, std::int32_t partition, std::int64_t offset)>;

// Bounded samples of finished durations: mean and p95 of the latest `capacity`.
class Durations {
 public:
  explicit Durations(std::size_t capacity = 1024) : capacity_(capacity) {}
  void Add(std::int64_t ms);
  std::size_t count() const { return count_; }
  // Mean and 95th percentile of the samples kept; nullopt without any.
  std::optional<std::pair<double, std::int64_t>> MeanP95() const;

 private:
  std::size_t capacity_;
  std::size_t count_ = 0;
  std::vector<std::int64_t> ring_;
  std::size_t next_ = 0;
};

class WorkflowIndex {
 public:
  struct Limits {
    std::size_t steps = 16;  // steps remembered per instance, the newest kept
  };
  explicit WorkflowIndex(Limits limits);
  WorkflowIndex() : WorkflowIndex(Limits{}) {}

  // One record of a state topic; a null value (tombstone) removes the instance.
  void Add(const std::string& topic, std::int32_t partition, std::int64_t offset,
           std::optional<std::string_view> key, std::optional<std::string_view> value);

  // GET /api/workflows, /api/instances, /api/instance, /api/result.
  Answer Workflows() const;
  Answer Instances(const Params& params) const;
  Answer Instance(const Params& params, const RecordFetch& fetch) const;
  Answer ResultOf(const Params& params, const RecordFetch& fetch, std::int64_t now_ms) const;

  // For the totals: per workflow and per starting message type.
  struct Counts {
    std::size_t running = 0, completed = 0, failed = 0;
    std::optional<std::pair<double, std::int64_t>> mean_p95;
    std::set<std::string> topics;  // ByType: where the runs' starting messages were read
  };
  std::map<std::string, Counts> ByWorkflow() const;
  std::map<std::string, Counts> ByType() const;
  std::size_t size() const;
  std::size_t bad_records() const;

 private:
  enum Status : std::uint8_t { kRunning, kCompleted, kFailed, kStatuses };
  struct Step {
    std::uint64_t version = 0;
    std::int64_t updated_ms = 0;
    Status status = kRunning;
    std::string message_id;
    std::vector<std::string_view> sent;  // interned type names
  };
  struct Entry {
    std::string id;
    Status status = kRunning;
    int run = 1;
    std::uint64_t version = 0;
    std::int64_t created_ms = 0, updated_ms = 0, finished_ms = 0;
    int attempt = -1;
    std::string_view phase;  // interned
    int timeouts = 0;
    bool has_result = false;
    std::int64_t result_expires_ms = 0;
    std::string_view starter_type;   // interned
    std::string_view starter_topic;  // interned
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    // Oldest first, at most Limits::steps. A vector: a deque takes a 512-byte block for one step.
    std::vector<Step> steps;
  };
  using OrderedSet =
      __gnu_pbds::tree<std::pair<std::int64_t, std::string>, __gnu_pbds::null_type,
                       std::less<std::pair<std::int64_t, std::string>>, __gnu_pbds::rb_tree_tag,
                       __gnu_pbds::tree_order_statistics_node_update>;
  struct Workflow {
    std::string name;
    std::string topic;
    std::unordered_map<std::string, Entry> instances;
    // Newest update first: (-updated_ms, id), one set per status and one of all, each able to
    // find its n-th element in O(log n), so a page deep in a long list costs what the first does.
    OrderedSet by_status[kStatuses];
    OrderedSet all;
    Durations durations;
  };

  std::string_view Intern(std::string_view text);
  static std::string_view StatusName(Status s);
  // Puts the entry in, or takes it out of, its workflow's ordered sets.
  static void Order(Workflow& wf, const Entry& e);
  static void Unorder(Workflow& wf, const Entry& e);
  static void WriteSummary(JsonWriter& w, const std::string& workflow, const Entry& e);
  const Workflow* Find(const Params& params, Answer* bad, std::string* name) const;
  // The instance the parameters workflow and id name, copied out; nullopt and *bad otherwise.
  struct Found {
    std::string name, id, topic;
    Entry entry;
  };
  std::optional<Found> Lookup(const Params& params, Answer* bad) const;

  Limits limits_;
  mutable std::shared_mutex mu_;
  std::map<std::string, Workflow, std::less<>> workflows_;  // by name
  std::unordered_map<std::string, std::string> topic_workflow_;  // state topic -> name
  std::set<std::string, std::less<>> interned_;
  std::map<std::string, Durations, std::less<>> type_durations_;
  // Instances per starting message type and status, kept as records arrive: ByType() walked
  // every instance per request, most of a /api/totals answer with 100,000 (bench/console.cpp).
  struct TypeCounts {
    std::array<std::size_t, kStatuses> by_status{};
    std::map<std::string_view, std::size_t> topics;  // the runs' starting topics, interned
  };
  std::map<std::string_view, TypeCounts> type_counts_;  // interned keys
  // Adds (+1) or removes (-1) an instance from type_counts_.
  void CountType(const Entry& e, int delta);
  std::size_t bad_records_ = 0;
};

}  // namespace kbus::console
