#pragma once
// The delivery policy: per-type settings over the worker's (DeliveryPolicy), the backoff between
// attempts, and where a failed delivery goes next (again in the worker, a retry tier, or the
// dead-letter topic).

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/kafka/config.hpp"
#include "kbus/slots.hpp"
#include "record_view.hpp"

namespace kbus::kafka::worker {

class DeliveryPolicies {
 public:
  DeliveryPolicies(const WorkerConfig& config, const HandlerRegistry& handlers);

  // The policy of a message type read from a topic (HandlerRegistry::Find(type, topic)), or
  // nullptr for the worker's settings. Looked up only on the paths that decide about a failure,
  // never per handled record.
  const DeliveryPolicy* Of(std::string_view type, std::string_view topic) const;
  // The same for a record: its type, and the topic it was first read from (a retry tier's copy
  // names it in kbus-retry-original-topic).
  const DeliveryPolicy* Of(const rd_kafka_message_t& m) const;
  // The policy of a type that has one route; nullptr (the worker's settings) for a type with
  // routes on several topics, whose policies may differ: prefer Of(m).
  const DeliveryPolicy* Of(std::string_view type) const;

  int MaxDeliveries(const DeliveryPolicy* policy) const;
  std::chrono::milliseconds VisibilityTimeout(const rd_kafka_message_t& m) const;
  // Exponential backoff with "equal jitter": half fixed, half random, so retries of many failing
  // records spread out instead of arriving together.
  std::chrono::milliseconds Backoff(int attempt, const DeliveryPolicy* policy);

  // Where a failed delivery (its `deliveries` so far) goes next.
  struct Next {
    enum class Where { kDeadLetter, kWorker, kTier } where;
    std::string tier_topic;      // kTier: the topic
    Clock::duration delay{};     // kTier: the tier's delay
  };
  Next AfterFailure(const DeliveryPolicy* policy, int deliveries, bool from_tier) const;

  // Every retry tier topic this worker reads (and writes), of its own settings and its types'.
  const std::set<std::string>& tier_topics() const { return tier_topics_; }
  // Slots of the types that need them.
  const std::vector<std::shared_ptr<Slots>>& slot_pools() const { return slot_pools_; }
  // A slot given back wakes the poll thread by yielding `queue`. Slots outlive the worker (a
  // launcher's jobs keep theirs), so the worker stops watching when it stops.
  void WatchSlots(rd_kafka_queue_t* queue);
  void UnwatchSlots();
  // A slot was given back since the last call.
  bool SlotsFreed() { return !slot_pools_.empty() && wake_->freed.exchange(false); }

 private:
  struct Wake {
    std::mutex mu;
    rd_kafka_queue_t* queue = nullptr;  // null once unwatched
    std::atomic<bool> freed{false};
  };
  const WorkerConfig& config_;
  const HandlerRegistry& handlers_;
  std::set<std::string> tier_topics_;
  std::vector<std::shared_ptr<Slots>> slot_pools_;
  std::shared_ptr<Wake> wake_ = std::make_shared<Wake>();  // shared with the slots' listeners
  bool typed_visibility_ = false;  // some type sets its own visibility timeout
  std::mt19937_64 rng_;
};

}  // namespace kbus::kafka::worker
