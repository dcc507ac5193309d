#pragma once
// Creating a benchmark's topics on whichever broker it runs against: the embedded broker (no
// admin API) or a real one.

#include <stdexcept>
#include <string>

#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/embedded_broker.hpp"

namespace bench {

// Creates `name` on `embedded`, or, when it is null, on the real broker at `brokers`; compacted
// if asked (the embedded broker ignores topic configs). Throws std::runtime_error on failure.
inline void CreateBenchTopic(kbus::kafka::EmbeddedBroker* embedded, const std::string& brokers,
                             const std::string& name, int partitions, bool compact) {
  kbus::Status s = kbus::Ok();
  if (embedded != nullptr) {
    s = embedded->CreateTopic(name, partitions);
  } else {
    kbus::kafka::TopicSpec spec{.name = name, .partitions = partitions};
    if (compact) spec.configs = {{"cleanup.policy", "compact"}};
    s = kbus::kafka::CreateTopics(kbus::kafka::ClientConfig{.brokers = brokers}, {spec});
  }
  if (!s.ok()) throw std::runtime_error("cannot create " + name + ": " + s.error().ToString());
}

}  // namespace bench
