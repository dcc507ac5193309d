#pragma once
// Metrics a process exposes on /metrics, in the Prometheus text format (version 0.0.4):
// counters, gauges and histograms, grouped in families that share a name, a help text and
// label names. docs/operations.md lists every metric kbus itself registers.
//
// Cost: updating a series is one relaxed atomic operation (a histogram: three). Looking a
// series up by its label values takes a lock and a map lookup, so code on a hot path looks its
// series up once and keeps the reference: a series lives as long as its registry, unless the
// family's Remove() drops it (only for series no one else holds, as a collector's are).
//
// Naming: names follow Prometheus's conventions (kbus_ prefix, base units such as _seconds and
// _bytes, counters end in _total). Label values must have bounded cardinality: a topic, a
// partition, a message type or an outcome, never a message id.
//
// Thread safety: everything here may be used from any thread. Render() runs the collectors on
// the calling thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace kbus::metrics {

// A count that only goes up (a process restart starts it at 0 again, which Prometheus's rate()
// understands).
class Counter {
 public:
  void Inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down: runs in flight, lag, partitions assigned.
class Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) noexcept;
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into buckets with fixed upper bounds, plus their sum and count.
class Histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double v) noexcept;

  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket (not cumulative), the +Inf bucket last.
  std::uint64_t bucket_count(std::size_t i) const noexcept {
    return counts_[i].load(std::memory_order_relaxed);
  }
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Bucket bounds for durations in seconds, from 1 ms to about 5 minutes.
std::vector<double> DurationBuckets();
// Bucket bounds for long runs (launched processes), from 1 s to about 3 hours.
std::vector<double> LongDurationBuckets();

enum class Kind { kCounter, kGauge, kHistogram };

// Series of one metric, one per combination of label values.
template <class M>
class Family {
 public:
  // The series with these label values (as many as the family has label names), made on first
  // use. Throws std::invalid_argument for a wrong number of values.
  M& With(std::initializer_list<std::string_view> values);
  M& With(const std::vector<std::string>& values);
  // Drops a series; references to it dangle. For collectors that own their series.
  void Remove(const std::vector<std::string>& values);
  // Drops every series whose label values `drop` is true for; references to them dangle.
  void RemoveIf(const std::function<bool(const std::vector<std::string>&)>& drop);

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> labels, Kind kind,
         std::vector<double> bounds);
  M& Find(std::vector<std::string> values);
  void Render(std::string& out) const;

  std::string name_;
  std::string help_;
  std::vector<std::string> labels_;
  Kind kind_;
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> series_;
};

class Registry;

// Keeps a collector registered; unregisters it when destroyed.
class CollectorHandle {
 public:
  CollectorHandle() = default;
  CollectorHandle(CollectorHandle&& other) noexcept;
  CollectorHandle& operator=(CollectorHandle&& other) noexcept;
  ~CollectorHandle();
  void Reset() noexcept;

 private:
  friend class Registry;
  CollectorHandle(Registry* registry, std::uint64_t id) : registry_(registry), id_(id) {}
  Registry* registry_ = nullptr;
  std::uint64_t id_ = 0;
};

// The metrics of one process (or one component, when a program wants them apart).
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The family named `name`, made on first call. Asking again with the same kind and label
  // names returns the same family, so two components of one process may share it; anything
  // else, or a name or label name Prometheus refuses, throws std::invalid_argument.
  Family<Counter>& AddCounter(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Gauge>& AddGauge(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<std::string> labels,
                                  std::vector<double> bounds);

  // `collect` runs at the start of each Render(), to bring gauges that mirror some state (lag,
  // assigned partitions) up to date. It must not call back into this registry's Add*/OnCollect.
  [[nodiscard]] CollectorHandle OnCollect(std::function<void()> collect);

  // The whole exposition, families in the order they were added, series sorted by label values.
  std::string Render() const;
  // The same, appended to `out` (a scrape reuses its buffer).
  void RenderTo(std::string& out) const;

 private:
  friend class CollectorHandle;
  struct Entry;
  Entry& Add(std::string name, std::string help, std::vector<std::string> labels, Kind kind,
             std::vector<double> bounds);
  void RemoveCollector(std::uint64_t id) noexcept;

  mutable std::mutex mu_;  // families_; never held while a family renders
  std::vector<std::unique_ptr<Entry>> families_;
  mutable std::mutex collect_mu_;  // one collection at a time, and collectors_ itself
  std::map<std::uint64_t, std::function<void()>> collectors_;
  std::uint64_t next_collector_ = 1;
};

// The content type of Render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace kbus::metrics
