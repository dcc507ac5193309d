#pragma once
// A record as a transport hands it to the dispatcher, with owned storage behind its views, for
// the unit tests of the dispatcher and of dead-letter copies.

#include <string>
#include <utility>
#include <vector>

#include "kbus/context.hpp"
#include "kbus/record.hpp"

namespace kbus_test {

// Partition 3, offset 42, a fixed timestamp; topic, key, payload and headers as given.
struct FakeRecord {
  std::string topic = "test.commands";
  std::string key = "k";
  std::string payload;
  std::vector<kbus::Header> headers;
  std::vector<kbus::HeaderView> views;

  kbus::InboundRecord View() {
    views.clear();
    for (const auto& h : headers) views.push_back({h.name, h.value});
    kbus::InboundRecord r;
    r.topic = topic;
    r.partition = 3;
    r.offset = 42;
    r.timestamp_ms = 1700000000000;
    r.key = key;
    r.payload = payload;
    r.headers = views;
    return r;
  }
};

template <class T>
FakeRecord RecordOf(const T& msg, kbus::SendOptions options = {}) {
  kbus::OutgoingRecord out = kbus::BuildRecord(msg, std::move(options));
  return FakeRecord{out.topic, out.key, out.payload, out.headers, {}};
}

}  // namespace kbus_test
