#include "delivery_policy.hpp"

#include <algorithm>
#include <cmath>

#include "kbus/envelope.hpp"

namespace kbus::kafka::worker {

DeliveryPolicies::DeliveryPolicies(const WorkerConfig& config, const HandlerRegistry& handlers)
    : config_(config), handlers_(handlers), rng_(std::random_device{}()) {
  for (const auto& tier : config.retry_tiers) tier_topics_.insert(RetryTierTopic(config.group, tier));
  for (const auto& route : handlers.Routes()) {
    const DeliveryPolicy& p = route->policy;
    if (p.visibility_timeout) typed_visibility_ = true;
    if (p.slots) slot_pools_.push_back(p.slots);
    if (p.retry_tiers) {
      for (const auto& tier : *p.retry_tiers) tier_topics_.insert(RetryTierTopic(config.group, tier));
    }
  }
}

void DeliveryPolicies::WatchSlots(rd_kafka_queue_t* queue) {
  if (slot_pools_.empty()) return;
  {
    std::lock_guard lock(wake_->mu);
    wake_->queue = queue;
  }
  for (const auto& slots : slot_pools_) {
    slots->SetListener([wake = wake_] {
      wake->freed.store(true);
      std::lock_guard lock(wake->mu);
      if (wake->queue != nullptr) rd_kafka_queue_yield(wake->queue);
    });
  }
}

void DeliveryPolicies::UnwatchSlots() {
  for (const auto& slots : slot_pools_) slots->SetListener(nullptr);
  std::lock_guard lock(wake_->mu);
  wake_->queue = nullptr;
}

const DeliveryPolicy* DeliveryPolicies::Of(std::string_view type) const {
  const HandlerRegistry::Route* route = type.empty() ? nullptr : handlers_.Find(type);
  return route == nullptr ? nullptr : &route->policy;
}

const DeliveryPolicy* DeliveryPolicies::Of(std::string_view type, std::string_view topic) const {
  const HandlerRegistry::Route* route = type.empty() ? nullptr : handlers_.Find(type, topic);
  return route == nullptr ? nullptr : &route->policy;
}

const DeliveryPolicy* DeliveryPolicies::Of(const rd_kafka_message_t& m) const {
  auto type = HeaderOf(m, header::kType);
  if (!type) return nullptr;
  // As the dispatcher routes it (Dispatcher::Dispatch): a retry tier's copy by its origin.
  const HandlerRegistry::Route* route = handlers_.Find(*type, rd_kafka_topic_name(m.rkt));
  if (route == nullptr) {
    if (auto origin = HeaderOf(m, header::kRetryTopic)) route = handlers_.Find(*type, *origin);
  }
  return route == nullptr ? nullptr : &route->policy;
}

int DeliveryPolicies::MaxDeliveries(const DeliveryPolicy* policy) const {
  return policy && policy->max_deliveries ? *policy->max_deliveries : config_.max_deliveries;
}

std::chrono::milliseconds DeliveryPolicies::VisibilityTimeout(const rd_kafka_message_t& m) const {
  if (!typed_visibility_) return config_.visibility_timeout;
  const DeliveryPolicy* policy = Of(m);
  return policy && policy->visibility_timeout ? *policy->visibility_timeout : config_.visibility_timeout;
}

std::chrono::milliseconds DeliveryPolicies::Backoff(int attempt, const DeliveryPolicy* policy) {
  const auto initial = policy && policy->retry_backoff_initial ? *policy->retry_backoff_initial
                                                               : config_.retry_backoff_initial;
  const auto max = policy && policy->retry_backoff_max ? *policy->retry_backoff_max : config_.retry_backoff_max;
  const double base = static_cast<double>(initial.count()) * std::pow(2.0, std::max(0, attempt - 1));
  const double capped = std::min(base, static_cast<double>(max.count()));
  std::uniform_real_distribution<double> jitter(0.0, capped / 2);
  return std::chrono::milliseconds(static_cast<std::int64_t>(capped / 2 + jitter(rng_)));
}

DeliveryPolicies::Next DeliveryPolicies::AfterFailure(const DeliveryPolicy* policy, int deliveries,
                                                      bool from_tier) const {
  if (deliveries >= MaxDeliveries(policy)) return {Next::Where::kDeadLetter, {}, {}};
  const auto& tiers = policy && policy->retry_tiers ? *policy->retry_tiers : config_.retry_tiers;
  const int local = policy && policy->local_attempts ? *policy->local_attempts : config_.local_attempts;
  // Later attempts wait in a tier topic, so the partition moves on meanwhile.
  if (tiers.empty() || (!from_tier && deliveries < local)) return {Next::Where::kWorker, {}, {}};
  const int step = std::max(0, deliveries - local);
  const auto delay = tiers[static_cast<std::size_t>(std::min<int>(step, static_cast<int>(tiers.size()) - 1))];
  return {Next::Where::kTier, RetryTierTopic(config_.group, delay), delay};
}

}  // namespace kbus::kafka::worker
