#include "kbus/handler_registry.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kbus {

namespace {

// The topics a route reads: its lanes' when it has lanes (its `topic` is then the first), else
// its topic.
std::vector<std::string> ReadTopics(const HandlerRegistry::Route& route) {
  if (route.lanes.empty()) return {route.topic};
  std::vector<std::string> out;
  out.reserve(route.lanes.size());
  for (const Lane& lane : route.lanes) out.push_back(lane.topic);
  return out;
}

bool Reads(const HandlerRegistry::Route& route, std::string_view topic) {
  if (route.lanes.empty()) return route.topic == topic;
  return std::any_of(route.lanes.begin(), route.lanes.end(), [&](const Lane& l) { return l.topic == topic; });
}

}  // namespace

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
  if (auto same = routes_.find(route.type); same != routes_.end()) {
    for (const Route& other : same->second) {
      for (const std::string& topic : ReadTopics(route)) {
        if (Reads(other, topic)) {
          throw std::logic_error("kbus: message type '" + route.type + "' already has a handler on topic '" + topic +
                                 "'; register each type once per topic in a group");
        }
      }
    }
  }
  std::set<std::string, std::less<>> seen;
  for (const Lane& lane : route.lanes) {
    const std::string what = "kbus: message type '" + route.type + "': lane '" + lane.topic + "'";
    if (lane.topic.empty()) throw std::logic_error("kbus: message type '" + route.type + "' has a lane without a topic");
    if (lane.weight < 1) throw std::logic_error(what + " has weight " + std::to_string(lane.weight) + ": use 1 or more");
    if (!seen.insert(lane.topic).second) throw std::logic_error(what + " is listed twice");
    if (auto it = lane_weights_.find(lane.topic); it != lane_weights_.end() && it->second != lane.weight) {
      throw std::logic_error(what + " has weight " + std::to_string(lane.weight) + ", another type gives it " +
                             std::to_string(it->second) + ": a topic has one weight");
    }
  }
  for (const Lane& lane : route.lanes) lane_weights_.emplace(lane.topic, lane.weight);
  if (route.kind == MessageKind::kCommand) {
    command_topics_.insert(route.topic);
    for (const Lane& lane : route.lanes) command_topics_.insert(lane.topic);
  }
  std::string key = route.type;
  routes_[std::move(key)].push_back(std::move(route));
  ++size_;
}

const HandlerRegistry::Route* HandlerRegistry::Find(std::string_view type, std::string_view topic) const {
  auto it = routes_.find(type);
  if (it == routes_.end()) return nullptr;
  const std::deque<Route>& routes = it->second;
  // The common case, one route per type, costs no topic comparison: it is the answer anyway.
  if (routes.size() == 1) return &routes.front();
  for (const Route& route : routes) {
    if (Reads(route, topic)) return &route;
  }
  return nullptr;
}

const HandlerRegistry::Route* HandlerRegistry::Find(std::string_view type) const {
  auto it = routes_.find(type);
  return it == routes_.end() || it->second.size() != 1 ? nullptr : &it->second.front();
}

std::vector<std::string> HandlerRegistry::TopicsOf(std::string_view type) const {
  std::set<std::string> topics;
  if (auto it = routes_.find(type); it != routes_.end()) {
    for (const Route& route : it->second) {
      for (const std::string& topic : ReadTopics(route)) topics.insert(topic);
    }
  }
  return {topics.begin(), topics.end()};
}

std::vector<const HandlerRegistry::Route*> HandlerRegistry::Routes() const {
  std::vector<const Route*> out;
  out.reserve(size_);
  for (const auto& [type, routes] : routes_) {
    for (const Route& route : routes) out.push_back(&route);
  }
  return out;
}

std::vector<std::string> HandlerRegistry::Topics() const {
  std::set<std::string> topics;
  for (const auto& [type, routes] : routes_) {
    for (const Route& route : routes) {
      for (const std::string& topic : ReadTopics(route)) topics.insert(topic);
    }
  }
  return {topics.begin(), topics.end()};
}

std::vector<Lane> HandlerRegistry::Lanes() const {
  std::vector<Lane> out;
  out.reserve(lane_weights_.size());
  for (const auto& [topic, weight] : lane_weights_) out.push_back(Lane{topic, weight});
  return out;
}

bool HandlerRegistry::IsCommandTopic(std::string_view topic) const {
  return command_topics_.find(topic) != command_topics_.end();
}

}  // namespace kbus
