#pragma once
// Priority lanes (HandlerOptions::lanes, docs/delivery.md): which lane a partition's records
// belong to, and which lane starts the next run while several have runs waiting. The partition
// book leases each lane as the handler pool runs low on it; the pool starts runs by the lanes'
// weights.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kbus/handler_registry.hpp"

namespace kbus::kafka::worker {

// Lane 0 holds every topic that is no lane (weight 1); lanes 1.. are HandlerRegistry::Lanes().
class LaneTable {
 public:
  // Lanes are tracked in 64-bit masks (PartitionBook::wanted_lanes).
  static constexpr std::size_t kMaxLanes = 64;

  LaneTable() : weights_{1} {}
  // Throws std::invalid_argument when the registry has more than kMaxLanes - 1 lanes.
  explicit LaneTable(const HandlerRegistry& handlers);

  std::size_t Of(std::string_view topic) const;
  const std::vector<int>& weights() const { return weights_; }
  std::size_t size() const { return weights_.size(); }

 private:
  std::vector<int> weights_;
  std::map<std::string, std::size_t, std::less<>> by_topic_;
};

// Smooth weighted round robin between the lanes with work: at each pick every such lane earns
// its weight, the richest is picked and pays the sum of their weights. While the same lanes
// have work, every round of sum-of-weights picks gives each lane exactly its weight, spread out
// (8 and 1: eight picks of the first, then one of the second, in every nine). A lane without
// work earns nothing and keeps no credit, so it cannot burst when its work comes back. Not
// thread-safe: the pool calls it under its queue's lock.
class LanePicker {
 public:
  explicit LanePicker(std::vector<int> weights);

  // The lane to start next; `has_work(lane)` says which have runs waiting. Returns size() when
  // none has.
  template <class HasWork>
  std::size_t Next(const HasWork& has_work) {
    if (weights_.size() == 1) return has_work(std::size_t{0}) ? 0 : 1;
    std::int64_t total = 0;
    std::size_t best = weights_.size();
    for (std::size_t i = 0; i < weights_.size(); ++i) {
      if (!has_work(i)) {
        credit_[i] = 0;
        continue;
      }
      credit_[i] += weights_[i];
      total += weights_[i];
      if (best == weights_.size() || credit_[i] > credit_[best]) best = i;
    }
    if (best != weights_.size()) credit_[best] -= total;
    return best;
  }
  std::size_t size() const { return weights_.size(); }

 private:
  std::vector<std::int64_t> weights_;
  std::vector<std::int64_t> credit_;
};

// One FIFO queue per lane, taken from by the lanes' weights (LanePicker): the handler pool's
// queue of runs. Not thread-safe.
template <class T>
class LaneQueues {
 public:
  explicit LaneQueues(std::vector<int> weights)
      : queues_(std::max<std::size_t>(1, weights.size())), picker_(std::move(weights)) {}

  void Push(std::size_t lane, T item) {
    queues_[lane].push_back(std::move(item));
    ++size_;
  }
  // Back at the head of its lane (a run given back before it started).
  void PushFront(std::size_t lane, T item) {
    queues_[lane].push_front(std::move(item));
    ++size_;
  }
  // The next item by the lanes' weights; the queues must not all be empty.
  T Take() {
    const std::size_t lane =
        queues_.size() == 1 ? 0 : picker_.Next([&](std::size_t l) { return !queues_[l].empty(); });
    T item = std::move(queues_[lane].front());
    queues_[lane].pop_front();
    --size_;
    return item;
  }
  std::size_t size() const { return size_; }
  std::size_t size(std::size_t lane) const { return queues_[lane].size(); }
  bool empty() const { return size_ == 0; }
  std::size_t lanes() const { return queues_.size(); }

 private:
  std::vector<std::deque<T>> queues_;
  LanePicker picker_;
  std::size_t size_ = 0;
};

}  // namespace kbus::kafka::worker
