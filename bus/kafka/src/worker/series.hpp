#pragma once
// The worker's metric series (docs/operations.md) and the counters behind Worker::Stats():
// looked up once at start-up, so that the hot path counts through plain pointers.

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/metrics.hpp"
#include "record_view.hpp"

namespace kbus::kafka::worker {

// The series of one message type ("unknown" for types no handler here knows). Written by the
// poll thread only (a handler's duration is measured on its thread and observed there).
struct TypeSeries {
  metrics::Counter* acked = nullptr;
  metrics::Counter* skipped = nullptr;
  metrics::Counter* retried = nullptr;
  metrics::Counter* dead_lettered = nullptr;
  metrics::Counter* abandoned = nullptr;
  metrics::Histogram* duration = nullptr;
  std::string_view name;  // the map's key
  // Counted on the poll thread since its last flush (Series::Flush), without an atomic per record.
  std::uint64_t acked_here = 0;
  std::uint64_t skipped_here = 0;
};

// What Worker::Stats() reports: written only by the poll thread, read from any thread.
struct Counters {
  std::atomic<std::uint64_t> handled{0}, skipped{0}, retried{0}, dead_lettered{0}, committed{0},
      abandoned{0}, delayed{0};
  std::atomic<std::uint32_t> assigned{0};
  std::atomic<std::uint32_t> stalled{0};      // partitions the stall check found stalled
  std::atomic<std::int32_t> paused{0};        // partitions librdkafka was told to pause
  // One writer, so a plain load and store is enough, without a locked read-modify-write.
  static void Count(std::atomic<std::uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

class Series {
 public:
  static constexpr std::string_view kUnknownType = "unknown";

  // Registers the worker's families and series in `registry`, labelled with `group`.
  Series(metrics::Registry& registry, const std::string& group, const HandlerRegistry& handlers);

  // The series of a message type; "unknown" for a type no handler here is registered for, so
  // that the label's values stay bounded whatever arrives.
  TypeSeries& TypeFor(std::optional<std::string_view> type);
  // The same for a handler thread that remembers the last type it saw: runs of one type tend to
  // come in a row, and a string compare is cheaper than a hash lookup.
  TypeSeries& TypeFor(std::optional<std::string_view> type, TypeSeries*& last);
  TypeSeries& Unknown() { return *unknown_type_; }

  metrics::Counter& DeadLetterCounter(std::string_view why);

  // A record received from a partition whose received-series is `received` (a wave comes mostly
  // from one partition at a time, so a run of them is counted at once).
  void CountReceived(metrics::Counter* received) {
    if (received_in_ != received) {
      if (received_in_ != nullptr) received_in_->Inc(received_here_);
      received_in_ = received;
      received_here_ = 0;
    }
    ++received_here_;
  }
  // Moves what the poll thread counted in plain fields to the series: once a turn, and before a
  // rebalance drops partitions.
  void Flush();

  metrics::Family<metrics::Counter>* received_family = nullptr;
  metrics::Family<metrics::Gauge>* lag_family = nullptr;
  metrics::Counter* retries_worker = nullptr;
  metrics::Counter* retries_tier = nullptr;
  metrics::Counter* commits_ok = nullptr;
  metrics::Counter* commits_failed = nullptr;
  metrics::Counter* rebalances_assigned = nullptr;
  metrics::Counter* rebalances_revoked = nullptr;
  metrics::Counter* rebalances_lost = nullptr;
  metrics::Gauge* runs_gauge = nullptr;
  metrics::Gauge* assigned_gauge = nullptr;
  metrics::Gauge* paused_gauge = nullptr;
  metrics::Gauge* stalled_gauge = nullptr;

 private:
  std::unordered_map<std::string, TypeSeries, StringHash, std::equal_to<>> type_series_;
  TypeSeries* unknown_type_ = nullptr;
  std::vector<TypeSeries*> all_types_;
  std::vector<std::pair<std::string_view, metrics::Counter*>> dead_letter_reasons_;
  metrics::Counter* dead_letters_other_ = nullptr;
  metrics::Counter* received_in_ = nullptr;
  std::uint64_t received_here_ = 0;
};

}  // namespace kbus::kafka::worker
