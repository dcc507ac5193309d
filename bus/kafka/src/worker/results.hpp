#pragma once
// What a handler run leads to: its result served (done, outgoing messages sent, a retry, a dead
// letter), or the run abandoned when it outlived its visibility timeout or its partition was
// given away. Poll thread only.

#include <string>

#include "delivery_policy.hpp"
#include "handler_pool.hpp"
#include "outbox.hpp"
#include "partition_book.hpp"
#include "series.hpp"

namespace kbus::kafka::worker {

class Results {
 public:
  // A run still going this many visibility timeouts after it started is stuck.
  static constexpr int kStuckFactor = 3;

  // `turn` is the poll loop's clock reading of the current turn.
  Results(PartitionBook& book, Outbox& outbox, DeliveryPolicies& policies, Series& series, Counters& counters,
          const Clock::time_point& turn)
      : book_(book), outbox_(outbox), policies_(policies), series_(series), counters_(counters), turn_(turn) {}

  // A run the pool handed back.
  void Serve(Attempt& a);
  // Gives up on a running delivery. With `decide`, its record is retried or dead-lettered now;
  // without (the partition is being given away), the next owner decides, from the ledger.
  void Abandon(Attempt& a, std::string why, bool decide = true);

 private:
  TypeSeries& TypeOf(const Attempt& a);

  PartitionBook& book_;
  Outbox& outbox_;
  DeliveryPolicies& policies_;
  Series& series_;
  Counters& counters_;
  const Clock::time_point& turn_;
};

}  // namespace kbus::kafka::worker
