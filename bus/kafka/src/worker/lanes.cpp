#include "lanes.hpp"

#include <stdexcept>

namespace kbus::kafka::worker {

LaneTable::LaneTable(const HandlerRegistry& handlers) : weights_{1} {
  for (const Lane& lane : handlers.Lanes()) {
    by_topic_.emplace(lane.topic, weights_.size());
    weights_.push_back(lane.weight);
  }
  if (weights_.size() > kMaxLanes) {
    throw std::invalid_argument("the handlers read " + std::to_string(weights_.size() - 1) +
                                " lane topics; a worker takes at most " + std::to_string(kMaxLanes - 1) +
                                ": give some of them no lane (weight 1) or run them in another worker");
  }
}

std::size_t LaneTable::Of(std::string_view topic) const {
  auto it = by_topic_.find(topic);
  return it == by_topic_.end() ? 0 : it->second;
}

LanePicker::LanePicker(std::vector<int> weights)
    : weights_(weights.begin(), weights.end()), credit_(weights.size(), 0) {
  if (weights_.empty()) {
    weights_.push_back(1);
    credit_.push_back(0);
  }
}

}  // namespace kbus::kafka::worker
