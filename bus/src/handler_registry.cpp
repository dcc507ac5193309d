#include "kbus/handler_registry.hpp"

#include <algorithm>
#include <stdexcept>

namespace kbus {

void HandlerRegistry::Add(Route route) {
  if (route.type.empty()) throw std::logic_error("kbus: a message type name must not be empty");
  if (route.topic.empty()) {
    throw std::logic_error("kbus: message type '" + route.type +
                           "' has no topic: set MessageTraits::kTopic or HandlerOptions::topic");
  }
  const DeliveryPolicy& policy = route.policy;
  if ((policy.max_deliveries && *policy.max_deliveries < 1) ||
      (policy.retry_backoff_initial && policy.retry_backoff_initial->count() < 0) ||
      (policy.retry_backoff_max && policy.retry_backoff_max->count() < 0) ||
      (policy.retry_backoff_initial && policy.retry_backoff_max &&
       *policy.retry_backoff_initial > *policy.retry_backoff_max) ||
      (policy.visibility_timeout && policy.visibility_timeout->count() <= 0) ||
      (policy.local_attempts && *policy.local_attempts < 1) ||
      (policy.retry_tiers && std::any_of(policy.retry_tiers->begin(), policy.retry_tiers->end(),
                                         [](auto d) { return d.count() <= 0; }))) {
    throw std::logic_error("kbus: message type '" + route.type +
                           "' has an impossible delivery policy: max_deliveries and local_attempts "
                           "must be >= 1, backoffs non-negative with initial <= max, the "
                           "visibility timeout and retry tiers positive");
  }
  if (routes_.contains(route.type)) {
    throw std::logic_error("kbus: message type '" + route.type +
                           "' already has a handler; register each type once per group");
  }
  if (route.kind == MessageKind::kCommand) command_topics_.insert(route.topic);
  std::string key = route.type;
  routes_.emplace(std::move(key), std::move(route));
}

const HandlerRegistry::Route* HandlerRegistry::Find(std::string_view type) const {
  auto it = routes_.find(type);
  return it == routes_.end() ? nullptr : &it->second;
}

std::vector<const HandlerRegistry::Route*> HandlerRegistry::Routes() const {
  std::vector<const Route*> out;
  out.reserve(routes_.size());
  for (const auto& [type, route] : routes_) out.push_back(&route);
  return out;
}

std::vector<std::string> HandlerRegistry::Topics() const {
  std::set<std::string> topics;
  for (const auto& [type, route] : routes_) topics.insert(route.topic);
  return {topics.begin(), topics.end()};
}

bool HandlerRegistry::IsCommandTopic(std::string_view topic) const {
  return command_topics_.find(topic) != command_topics_.end();
}

}  // namespace kbus
