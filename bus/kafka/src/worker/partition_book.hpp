#pragma once
// The partition book: every assigned partition's records from fetch to commit. It decides what
// may run next (ordering keys, backoff holds, suspects, in-flight and buffer limits), what the
// next commit may say (the finished prefix), and whether a partition should be fetched (pause
// reasons); it never talks to librdkafka. The worker carries its decisions out: leases through
// the offset committer, runs through the handler pool, pauses through the consumer.
// Poll thread only.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/metrics.hpp"
#include "kbus/record.hpp"
#include "kbus/slots.hpp"
#include "record_view.hpp"

namespace kbus::kafka::worker {

// One consumed record that is not finished yet. Records of a partition stay in offset order.
struct Entry {
  enum class State {
    kQueued,   // not run yet: waiting for its key, a lease, or (in a retry tier) its time
    kRunning,  // a handler thread has it
    kWaiting,  // a retry (of the handler, or of a copy's send) is due at `due`
    kSending,  // waiting for the broker to acknowledge its sends or its copy
    kDone,     // may be committed
  };
  // What the pending or next send is: the handler's outgoing messages, or a copy of the record.
  enum class Copy { kNone, kOutgoing, kDeadLetter, kRetryTier };
  std::int64_t offset = 0;
  MessagePtr msg;
  State state = State::kQueued;
  // Deliveries counted in the ledger, by earlier owners too. A delivery is counted (leased)
  // before the handler runs, so a crash during it still counts.
  int deliveries = 0;
  bool ticket = false;       // a lease for the next run is recorded; the run consumes it
  bool suspect = false;      // delivered before an unclean takeover: runs alone, leased alone
  bool suspect_out = false;  // counted in Partition::suspects_out
  bool holds_key = false;    // owns its ordering key's slot
  std::uint64_t run = 0;     // bumped per run; a result of an earlier run is stale
  int pending_sends = 0;
  bool send_failed = false;
  Copy copy = Copy::kNone;
  std::vector<OutgoingRecord> outgoing;  // kept until acknowledged, to be sent again
  // Sent and acknowledged before `outgoing` (Context::WriteAhead); the key is held meanwhile.
  std::vector<OutgoingRecord> write_ahead;
  std::function<void(const Status&)> verdict;  // told how `write_ahead` ended
  int send_rounds = 0;                   // failed rounds of sending `outgoing`
  std::string tier_topic;
  std::string_view reason;
  std::string error;
  Clock::time_point due{};
  Clock::time_point not_before{};  // records of a retry tier: their due time
  SlotHold slot;                   // taken with the lease, handed to the run
};

// Who may run next for one ordering key: the holder, then the parked records in offset order.
// (A vector and a head index, not a deque: a deque allocates when constructed, and nearly every
// key comes and goes without parking anything.)
struct KeySlot {
  std::vector<Entry*> parked;
  std::size_t head = 0;
};

struct Partition {
  // Its records and keys come and go with every message: they take their memory from the
  // book's pool, which recycles it without going through malloc.
  explicit Partition(std::pmr::memory_resource* mr) : entries(mr), keys(mr) {}
  std::string topic;
  std::int32_t partition = 0;
  bool tier = false;  // a retry tier topic of this group: records wait until due
  std::size_t lane = 0;  // its topic's priority lane (LaneTable); 0 for a topic that is none
  std::pmr::deque<Entry> entries;
  std::size_t scan = 0;             // entries before it were looked at for dispatch
  std::int64_t commit_next = -1;    // next offset to commit; -1: nothing finished yet
  std::int64_t committed = -1;      // last commit the broker accepted
  // Why fetching should stop (PartitionBook::WantsPause); `paused` is what the consumer was
  // last told.
  bool full = false;       // too many records buffered (until it drains to half)
  bool head_wait = false;  // the head of a retry tier is not due yet
  bool starved = false;    // its next record finds no free slot (DeliveryPolicy::slots)
  bool paused = false;
  bool pause_queued = false;  // listed for PartitionBook::TakePauseChanges
  // For the stall check: when it last received or finished a record.
  Clock::time_point moved{};
  bool stall_reported = false;
  std::int64_t start = -1;        // the committed offset found at assignment, -1 for none
  std::int64_t next_offset = -1;  // after the last record received
  std::uint64_t epoch = 0;        // unique per assignment: late reports must not match
  std::shared_ptr<std::atomic<bool>> revoked = std::make_shared<std::atomic<bool>>(false);
  std::deque<Entry*> need_lease;  // may run once leased
  std::vector<Entry*> waits;      // kWaiting
  std::pmr::unordered_map<std::pmr::string, KeySlot, StringHash, std::equal_to<>> keys;  // held keys
  int in_flight = 0;     // leased runs not finished (queued in the pool or running)
  int suspects_out = 0;  // suspects leased and not finished: nothing else is leased meanwhile
  // The previous owner's ledger, read at assignment: counts per offset, and whether it left
  // cleanly (a dirty ledger means deliveries may have been running when it died).
  std::map<std::int64_t, int> prior;
  bool dirty_takeover = false;
  std::string committed_metadata;  // the ledger text of the last accepted commit
  // Its series (looked up at assignment): records received, and the consumer lag.
  metrics::Counter* received = nullptr;
  metrics::Gauge* lag = nullptr;
};

// What the book asks of the rest of the worker while it chooses the next leases.
class LeaseHooks {
 public:
  virtual ~LeaseHooks() = default;
  // Takes what the next run of `e` needs besides its lease (a slot of its type). False when
  // that is not to be had: the partition then waits (starved) until PartitionBook::SlotsFreed.
  virtual bool Reserve(Partition& p, Entry& e) = 0;
  // The ledger text of `p` with the counts just chosen; `*covered_until` receives the highest
  // offset whose count it holds (it has a size limit).
  virtual std::string Ledger(const Partition& p, std::int64_t* covered_until) = 0;
  // Adds `p`'s lease, with ledger text `ledger`, to the commit being built.
  virtual void Record(Partition& p, std::string ledger) = 0;
};

using EntryRef = std::pair<Partition*, Entry*>;

class PartitionBook {
 public:
  // Records taken from the consumer in one turn.
  static constexpr int kMaxWave = 4000;
  // Runs leased and not started stay within this many waves in all.
  static constexpr std::size_t kLeaseWaves = 16;
  // Leased runs per partition not finished yet: a crash charges each of them one delivery.
  static constexpr int kMaxInFlight = 4000;
  // How often to look whether the runs a waiting suspect waits for have finished.
  static constexpr std::chrono::milliseconds kSuspectDrainCheck{10};

  PartitionBook(Ordering ordering, std::size_t max_buffered);
  PartitionBook(const PartitionBook&) = delete;
  PartitionBook& operator=(const PartitionBook&) = delete;

  // ---- assignment ---------------------------------------------------------------------------
  // A new assignment of topic/partition with a new epoch, replacing one the book still had.
  Partition& Add(const std::string& topic, std::int32_t partition, bool tier, Clock::time_point now);
  void Remove(std::string_view topic, std::int32_t partition);
  Partition* Find(std::string_view topic, std::int32_t partition);
  // The partition of a consumed record: a fast path for many records in a row from one.
  Partition* Find(const rd_kafka_message_t& m);
  // The partition of assignment `epoch`, if it is still assigned.
  Partition* Live(std::uint64_t epoch);
  static Entry* FindEntry(Partition& p, std::int64_t offset);
  template <class F>
  void ForEach(F&& f) {
    for (auto& [key, p] : partitions_) f(p);
  }
  std::size_t size() const { return partitions_.size(); }
  bool empty() const { return partitions_.empty(); }

  // ---- records ------------------------------------------------------------------------------
  // How many deliveries a record may have (its type's policy): asked only of records that were
  // delivered before.
  using MaxDeliveries = std::function<int(const rd_kafka_message_t&)>;
  // Takes a record fetched from `p`. A retry tier's record waits until its due time; a record
  // the previous owner counted takes its count over (a suspect, after an unclean stop); one
  // whose deliveries are used up is to be dead-lettered without running (Scan returns it). The
  // partition is full once it buffers max_buffered.
  void Receive(Partition& p, MessagePtr msg, Clock::time_point now, const MaxDeliveries& max_deliveries);
  // The record gives up its ordering key: the next parked record of that key may be leased.
  void ReleaseKey(Partition& p, Entry& e);
  // The record is done: it may be committed once the records before it are. Its message goes
  // to released().
  void Finish(Partition& p, Entry& e);
  // Pops the finished prefix: its last offset + 1 is what the next commit will say.
  void AdvanceCommit(Partition& p, Clock::time_point now);
  // Where the partition's next commit points: after the finished prefix, or at the first
  // record held when nothing finished yet; -1 when there is nothing to say.
  static std::int64_t CommitOffset(const Partition& p);
  // The record waits until `due` (a retry, or a copy to send again).
  void Wait(Partition& p, Entry& e, Clock::time_point due);

  // ---- leasing ------------------------------------------------------------------------------
  // One round, in three steps. First looks at the records not looked at yet in every partition
  // (keys, tier due times); records whose deliveries are used up go to `dead`, to be
  // dead-lettered without running. True when a suspect is next and nothing runs: the caller
  // commits what finished before leasing it, so that a crash in the suspect does not run
  // finished records again.
  bool Scan(Clock::time_point now, std::vector<EntryRef>& dead);
  // Then chooses the next deliveries of every partition (their counts raised, a ticket each),
  // up to kMaxInFlight per partition and a share of the room its lane has left: `queued[lane]`
  // runs of each priority lane are queued in the pool and not started, and each lane may have
  // kMaxWave * kLeaseWaves, so that a lane whose runs wait in the pool (a bulk backlog) never
  // keeps another from being leased. Only lanes in `lanes` (bits, LaneBit) are leased; the
  // others are left wanting. Records each partition's lease through `hooks`. A suspect is
  // leased alone, and nothing else until it finished.
  void Choose(Clock::time_point now, std::span<const std::size_t> queued, std::uint64_t lanes, LeaseHooks& hooks,
              std::vector<EntryRef>& leased);
  // With one lane.
  void Choose(Clock::time_point now, std::size_t queued, LeaseHooks& hooks, std::vector<EntryRef>& leased) {
    Choose(now, std::span<const std::size_t>(&queued, 1), ~std::uint64_t{0}, hooks, leased);
  }
  // Takes a chosen lease back (not recorded).
  static void Unlease(Entry& e);
  // The lease is recorded: leased records leave their lists; copies due to be sent again are
  // returned in `resend`.
  void Leased(Clock::time_point now, std::vector<EntryRef>& resend);
  // A leased record is handed to a handler thread.
  void Begin(Partition& p, Entry& e);
  // A run of `p` ended: its result is served, or it was abandoned.
  void RunEnded(Partition& p) {
    --p.in_flight;
    Want(p);
  }

  // Something became runnable (a key freed, a run ended, a slot freed): lease soon. Which lanes
  // it was in, as bits (1 << lane), so that the caller leases when one of those runs low in the
  // pool and not whenever any lane does.
  bool lease_wanted = false;
  std::uint64_t wanted_lanes = 0;
  void Want(const Partition& p) {
    lease_wanted = true;
    wanted_lanes |= LaneBit(p.lane);
  }
  void WantAll() {
    lease_wanted = true;
    wanted_lanes = ~std::uint64_t{0};
  }
  static std::uint64_t LaneBit(std::size_t lane) { return std::uint64_t{1} << (lane % 64); }
  // When the next round must run anyway: the earliest due retry or tier head, max() when none.
  Clock::time_point next_due = Clock::time_point::max();
  void NoteWaiting(Clock::time_point due) { next_due = std::min(next_due, due); }

  // ---- fetching -----------------------------------------------------------------------------
  // Whether the partition should not be fetched now: full, a tier head not due, or starved.
  static bool WantsPause(const Partition& p) { return p.full || p.head_wait || p.starved; }
  // Partitions whose WantsPause changed from what the consumer was last told, for the caller
  // to tell it; each at most once until taken.
  std::vector<Partition*> TakePauseChanges();
  // Slots were given back: starved partitions may be leased from again.
  void SlotsFreed();

  // Records the book is done with, for the caller to release.
  std::vector<MessagePtr>& released() { return released_; }

 private:
  std::optional<std::string_view> OrderKey(const rd_kafka_message_t& m) const;
  void Examine(Partition& p, Clock::time_point now, std::vector<EntryRef>& dead);
  void QueuePause(Partition& p);

  struct TpLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::tie(a.first, a.second) < std::tie(b.first, b.second);
    }
  };
  using TpKey = std::pair<std::string, std::int32_t>;
  using TpView = std::pair<std::string_view, std::int32_t>;

  Ordering ordering_;
  std::size_t max_buffered_;
  std::uint64_t next_epoch_ = 1;
  // Before the partitions, which use it.
  std::pmr::unsynchronized_pool_resource pool_;
  std::map<TpKey, Partition, TpLess> partitions_;
  std::unordered_map<std::uint64_t, Partition*> live_;  // by epoch
  // Every assignment's revoked flag, kept for the worker's life: runs queued for a partition
  // that is gone still read theirs (one flag per assignment, so a few bytes per rebalance).
  std::vector<std::shared_ptr<std::atomic<bool>>> revoked_flags_;
  std::vector<std::uint64_t> pause_changes_;  // epochs
  std::vector<MessagePtr> released_;
  std::size_t lease_rotation_ = 0;
  // Choose's per-lane tallies, kept for their memory.
  std::vector<std::size_t> lane_parts_, lane_left_, lane_share_;
  // Fast path of Find(message).
  const rd_kafka_topic_t* last_rkt_ = nullptr;
  std::int32_t last_partition_ = -1;
  Partition* last_ = nullptr;
};

}  // namespace kbus::kafka::worker
