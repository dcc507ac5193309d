#pragma once
// Producer: sends records to Kafka. Idempotent (acks=all, no duplicates from internal retries),
// murmur2_random partitioning (keys land where Java clients put them), delivery reports checked.
//
// Thread safety: Produce/Send/Flush may be called from any thread. Delivery callbacks run on the
// background poll thread, or, with background_poll off, on the thread calling Poll or Flush.

#include <chrono>
#include <functional>
#include <memory>

#include "kbus/context.hpp"
#include "kbus/kafka/config.hpp"
#include "kbus/message.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {

class Producer {
 public:
  using DeliveryCallback = std::function<void(const Status&)>;

  // Throws std::invalid_argument when a property is refused, naming it.
  explicit Producer(const ProducerConfig& config);
  ~Producer();  // flushes for up to 10 s, then drops what is left (logged)
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Queues `record`; `done` reports the broker's verdict. An error returned here means the record
  // was not queued and `done` will not run.
  Status Produce(const OutgoingRecord& record, DeliveryCallback done = {});

  // Sends and waits for the broker's acknowledgement.
  Status SendSync(const OutgoingRecord& record,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Sends a typed message with a fresh envelope and waits for the acknowledgement. A message
  // kbus does not put on the wire (a string that is not UTF-8: EncodeError) is an error here.
  template <Message T>
  Status Send(const T& message, SendOptions options = {}) {
    OutgoingRecord record;
    try {
      record = BuildRecord(message, std::move(options));
    } catch (const EncodeError& e) {
      return e.error();
    }
    return SendSync(record);
  }

  // Serves delivery reports; returns how many were served.
  int Poll(std::chrono::milliseconds timeout);
  // Waits until every queued record has a delivery report.
  Status Flush(std::chrono::milliseconds timeout);
  // Records queued or in flight.
  int InFlight() const;

  // Learns where every topic of the cluster lives (one metadata request for all topics), so
  // that the first record to any of them is sent at once: librdkafka 2.0.2 otherwise holds the
  // first record to a topic it does not know for about a second while it looks the topic up.
  // Safe from any thread.
  Status LearnTopics(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::kafka
