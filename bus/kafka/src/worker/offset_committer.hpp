#pragma once
// The offset committer: every commit the worker makes. A commit carries the partition's
// finished prefix as its offset and its delivery ledger as metadata: the periodic commits, the
// clean ones at a revocation or shutdown, and the leases that count deliveries before they run
// (docs/delivery.md). One commit at a time, so a lease is never overtaken by an older ledger.
// Poll thread only.

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "../rd_handles.hpp"
#include "partition_book.hpp"
#include "series.hpp"

namespace kbus::kafka::worker {

class OffsetCommitter {
 public:
  OffsetCommitter(PartitionBook& book, Series& series, Counters& counters)
      : book_(book), series_(series), counters_(counters) {}

  void Attach(rd_kafka_t* consumer) { consumer_ = consumer; }

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

  // Commits every partition (of `ps`, or all) whose offset or ledger changed since its last
  // accepted commit.
  void CommitAll(bool clean);
  void CommitChanged(const std::vector<Partition*>& ps, bool clean);

  // Leases the deliveries PartitionBook::Choose picks, in one commit. `reserve` takes what a
  // run needs besides its lease (LeaseHooks::Reserve). True when the broker recorded the lease
  // (or nothing was chosen); otherwise the leases are taken back.
  bool Lease(Clock::time_point now, std::size_t queued, const std::function<bool(Partition&, Entry&)>& reserve,
             std::vector<EntryRef>& leased);

 private:
  static void Add(rd_kafka_topic_partition_list_t* list, const Partition& p, std::string metadata);
  // Commits synchronously. True when the broker accepted every partition of the list.
  bool Commit(rd_kafka_topic_partition_list_t* list);
  bool OnCommitted(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets);

  PartitionBook& book_;
  Series& series_;
  Counters& counters_;
  rd_kafka_t* consumer_ = nullptr;
  std::vector<std::pair<std::int64_t, int>> ledger_buf_;
  bool ledger_full_logged_ = false;
};

}  // namespace kbus::kafka::worker
