#pragma once
// ProducerSink: the launcher's events through a kbus Kafka producer. One idempotent producer
// keeps a run's events in order on their partition. Needs kbus::kafka.
//
// Thread safety: as the producer's, any thread.

#include "kbus/handlers/launcher.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"

namespace kbus::handlers {

class ProducerSink final : public EventSink {
 public:
  explicit ProducerSink(kafka::Producer& producer) : producer_(producer) {}

  void Post(OutgoingRecord record, Delivered done) override {
    auto report = [topic = record.topic, done](const Status& s) {
      if (!s.ok()) Log(LogLevel::kWarn, "event not delivered", {{"topic", topic}, {"error", s.error().message()}});
      if (done) done(s);
    };
    if (Status s = producer_.Produce(record, std::move(report)); !s.ok()) {
      Log(LogLevel::kWarn, "event not queued", {{"topic", record.topic}, {"error", s.error().message()}});
      if (done) done(s);
    }
  }

  Status Deliver(const OutgoingRecord& record) override { return producer_.SendSync(record); }

 private:
  kafka::Producer& producer_;
};

}  // namespace kbus::handlers
