#pragma once
// The outbox: everything the worker sends on behalf of a consumed record, and what follows from
// the broker's answers. A handler's outgoing messages, a dead-letter copy, a copy to a retry
// tier; a record is done once the broker acknowledged all of its sends, and a round that fails
// is sent again (the same messages, the same ids) after a backoff. Also what a failed delivery
// leads to: a retry here, a tier copy, or the dead-letter topic (DeliveryPolicies decides which).
// Poll thread only.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/kafka/producer.hpp"
#include "delivery_policy.hpp"
#include "partition_book.hpp"
#include "series.hpp"

namespace kbus::kafka::worker {

class Outbox {
 public:
  // The shortest wait before a failed send (outgoing messages, or a copy) is sent again.
  static constexpr std::chrono::milliseconds kMinSendRetry{1000};

  // `turn` is the poll loop's clock reading of the current turn.
  Outbox(const WorkerConfig& config, PartitionBook& book, DeliveryPolicies& policies, Series& series,
         Counters& counters, const Clock::time_point& turn);

  // Creates the producer, and starts learning the cluster's topics on a thread of its own
  // (Producer::LearnTopics), so that the first message to any topic leaves at once.
  void Open(const ProducerConfig& config);
  ~Outbox();
  // The producer has learned the cluster's topics: part of the worker's readiness. Any thread.
  bool warm() const { return warm_.load(std::memory_order_relaxed); }

  // The handler succeeded with these messages to send. With `write_ahead` records, those are
  // sent first, and `outgoing` once they are acknowledged; `e` keeps its key until then.
  void SendAll(Partition& p, Entry& e, std::vector<OutgoingRecord> outgoing,
               std::vector<OutgoingRecord> write_ahead = {}, std::function<void(const Status&)> verdict = {});
  // Sends the dead-letter copy of `e`, with e.reason and e.error.
  void SendDeadLetter(Partition& p, Entry& e);
  // Sends again what is due for a waiting record (its outgoing messages, or its copy).
  void Resend(Partition& p, Entry& e);
  // A delivery failed: wait and run it again here, move it to a retry tier, or, with its
  // deliveries used up, dead-letter it with `final_reason`.
  void Failed(Partition& p, Entry& e, std::string_view final_reason, std::string error,
              std::chrono::milliseconds after, const DeliveryPolicy* policy);

  // Sends not acknowledged yet, and serving their delivery reports.
  int pending() const { return pending_; }
  void Poll(std::chrono::milliseconds timeout) {
    producer_->Poll(timeout);
    if (quick_) quick_->Poll(std::chrono::milliseconds(0));
  }
  // Whether a record of `p` waits for the broker to acknowledge a send.
  static bool Sending(const Partition& p);

 private:
  void SendOutgoing(Partition& p, Entry& e);
  void SendToTier(Partition& p, Entry& e);
  void SendCopy(Partition& p, Entry& e, Entry::Copy copy, const OutgoingRecord& rec);
  void Send(Partition& p, Entry& e, const OutgoingRecord& rec);
  void OnSent(std::uint64_t epoch, std::int64_t offset, const Status& s);
  void SendsFinished(Partition& p, Entry& e);
  // Tells the handler how its write-ahead records ended, once.
  static void Verdict(Entry& e, const Status& s);

  const WorkerConfig& config_;
  PartitionBook& book_;
  DeliveryPolicies& policies_;
  Series& series_;
  Counters& counters_;
  const Clock::time_point& turn_;
  std::unique_ptr<Producer> producer_;
  // Write-ahead records while few are on their way go through a producer of their own that
  // lingers for nothing, so that a step at low load waits for one round trip, not for the
  // linger; with more on their way they go through `producer_`, whose requests fill. A key has
  // one write-ahead round on its way at a time, so its records keep their order either way.
  static constexpr int kQuickWriteAheads = 32;
  ProducerConfig quick_config_;
  std::unique_ptr<Producer> quick_;  // made on first use
  int write_aheads_out_ = 0;
  std::atomic<bool> warm_{false};
  std::atomic<bool> stopping_{false};
  std::thread warm_up_;  // joined before the producer goes
  int pending_ = 0;
  std::vector<HeaderView> header_buf_;
};

}  // namespace kbus::kafka::worker
