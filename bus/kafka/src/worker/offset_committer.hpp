#pragma once
// The offset committer: every commit the worker makes. A commit carries the partition's
// finished prefix as its offset and its delivery ledger as metadata: the periodic commits, the
// clean ones at a revocation or shutdown, and the leases that count deliveries before they run
// (docs/delivery.md). One commit at a time, so a lease is never overtaken by an older ledger.
//
// Commits are asynchronous: the broker's answer arrives on a queue of the committer's own, whose
// arrival wakes the poll thread, and is served by Poll(). Meanwhile the poll thread goes on
// polling, serving results and sending; a lease's records are handed over (on_leased) only once
// the broker recorded their counts. Commits that must be settled before the worker goes on (a
// revocation, shutdown) wait for the answer (Settle, and the *Now functions). Poll thread only.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../rd_handles.hpp"
#include "partition_book.hpp"
#include "series.hpp"

namespace kbus::kafka::worker {

class OffsetCommitter {
 public:
  // Records of a lease the broker recorded, still assigned and leased: they may run now.
  using OnLeased = std::function<void(std::vector<EntryRef>& leased)>;

  OffsetCommitter(PartitionBook& book, Series& series, Counters& counters, OnLeased on_leased)
      : book_(book), series_(series), counters_(counters), on_leased_(std::move(on_leased)) {}
  ~OffsetCommitter();
  OffsetCommitter(const OffsetCommitter&) = delete;
  OffsetCommitter& operator=(const OffsetCommitter&) = delete;

  // Commits through `consumer`; an answer wakes the poll thread by yielding `wake`.
  void Attach(rd_kafka_t* consumer, rd_kafka_queue_t* wake);

  // Reads the committed offsets of `parts`, and their metadata (the previous owners' ledgers),
  // into `parts`. On failure the partitions start without counts, which is logged.
  void ReadCommitted(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts);
  // A new assignment takes over what `tp` (read by ReadCommitted) says: where it starts, and the
  // previous owner's counts.
  void TakeOver(Partition& p, const rd_kafka_topic_partition_t& tp);

  // The ledger of the partition's counted records past the committed offset: unfinished ones,
  // and finished ones that wait for an earlier record (the next owner runs those again, so their
  // count must carry over too). Clean when asked (revocation, shutdown) or when it is empty. At
  // most kMaxLedgerBytes: counts of the highest offsets are left out first, and `*covered_until`
  // says up to where counts were written.
  std::string LedgerFor(const Partition& p, bool clean, std::int64_t* covered_until = nullptr);

  // A commit is in flight: the next one waits for its answer.
  bool busy() const { return in_flight_.has_value(); }
  // How long the broker took to answer the last commit.
  Clock::duration last_round_trip() const { return last_round_trip_; }
  // Serves the answer to the commit in flight if it arrived, waiting up to `timeout` for it.
  void Poll(std::chrono::milliseconds timeout);
  // Waits up to `timeout` for the commit in flight to be answered. False when it was not.
  bool Settle(std::chrono::milliseconds timeout);

  // Commits every partition (of `ps`, or all) whose offset or ledger changed since its last
  // accepted commit, and waits for the answer (the one in flight first).
  void CommitAllNow(bool clean);
  void CommitChangedNow(const std::vector<Partition*>& ps, bool clean);
  // The same without waiting; nothing while a commit is in flight. True when one was sent.
  bool CommitAllAsync();

  // Leases the deliveries PartitionBook::Choose picks, in one asynchronous commit (nothing while
  // a commit is in flight). `reserve` takes what a run needs besides its lease
  // (LeaseHooks::Reserve). When the broker recorded it, its records go to on_leased; when it
  // refused, the leases are taken back and the book is told to try again shortly.
  // `queued`: the runs of each priority lane queued in the pool; only the lanes in `lanes` are
  // leased (PartitionBook::Choose).
  void Lease(Clock::time_point now, std::span<const std::size_t> queued, std::uint64_t lanes,
             const std::function<bool(Partition&, Entry&)>& reserve);

  // How soon to try again when the broker refused a lease (e.g. during a rebalance).
  static constexpr std::chrono::milliseconds kLeaseRetry{100};
  // The longest wait for an answer the worker cannot go on without.
  static constexpr std::chrono::seconds kSettleTimeout{30};

 private:
  // The commit in flight: what was sent, and for a lease, which records (by assignment and
  // offset, since a rebalance may drop their entries meanwhile).
  struct InFlight {
    detail::RdPartitionListPtr list;
    bool lease = false;
    std::vector<std::pair<std::uint64_t, std::int64_t>> leased;
    Clock::time_point sent{};
  };
  static void Add(rd_kafka_topic_partition_list_t* list, const Partition& p, std::string metadata);
  // The list of every partition of `ps` whose offset or ledger changed.
  detail::RdPartitionListPtr Changed(const std::vector<Partition*>& ps, bool clean);
  // Sends `list` (not empty) asynchronously; nothing may be in flight.
  void Send(detail::RdPartitionListPtr list, bool lease, std::vector<std::pair<std::uint64_t, std::int64_t>> leased);
  void OnAnswer(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* answer);
  // Records what the broker accepted. True when it accepted every partition of `sent`.
  bool OnCommitted(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* sent,
                   const rd_kafka_topic_partition_list_t* answer);
  static void WakeTrampoline(rd_kafka_t*, void* queue) noexcept;

  PartitionBook& book_;
  Series& series_;
  Counters& counters_;
  OnLeased on_leased_;
  rd_kafka_t* consumer_ = nullptr;
  rd_kafka_queue_t* answers_ = nullptr;  // the broker's answers to commits
  std::optional<InFlight> in_flight_;
  Clock::duration last_round_trip_{};
  std::vector<EntryRef> leased_buf_;
  std::vector<std::pair<std::int64_t, int>> ledger_buf_;
  bool ledger_full_logged_ = false;
};

}  // namespace kbus::kafka::worker
