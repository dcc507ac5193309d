#include "kbus/kafka/worker.hpp"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kbus/delivery_ledger.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"
#include "kbus/ops/server.hpp"
#include "rd_handles.hpp"

namespace kbus::kafka {

using Clock = std::chrono::steady_clock;
using detail::RdMessagePtr;
using detail::RdPartitionListPtr;

namespace {

// Views of a consumed message's headers, reusing one vector to avoid an allocation per record.
InboundRecord ViewRecord(const rd_kafka_message_t* m, std::vector<HeaderView>& headers) {
  headers.clear();
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0; ++i) {
      headers.push_back({name, value ? std::string_view(static_cast<const char*>(value), size)
                                     : std::string_view()});
    }
  }
  InboundRecord r;
  r.topic = rd_kafka_topic_name(m->rkt);
  r.partition = m->partition;
  r.offset = m->offset;
  rd_kafka_timestamp_type_t type;
  r.timestamp_ms = rd_kafka_message_timestamp(m, &type);
  if (m->key != nullptr) r.key = {static_cast<const char*>(m->key), m->key_len};
  if (m->payload != nullptr) r.payload = {static_cast<const char*>(m->payload), m->len};
  r.headers = headers;
  return r;
}

std::string_view MessageId(const InboundRecord& r) {
  return r.FindHeader(header::kId).value_or(std::string_view());
}

// The last value of header `name`, if the message has it.
std::optional<std::string_view> HeaderOf(const rd_kafka_message_t& m, std::string_view name) {
  rd_kafka_headers_t* hdrs = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_message_headers(&m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(hdrs, std::string(name).c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr) {
    return std::nullopt;
  }
  return std::string_view(static_cast<const char*>(value), size);
}

std::optional<std::int64_t> ParseInt(std::optional<std::string_view> text) {
  if (!text || text->empty() || text->size() > 19) return std::nullopt;
  std::int64_t v = 0;
  for (char c : *text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::int64_t EpochMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace

struct Worker::Impl {
  using MessagePtr = std::shared_ptr<rd_kafka_message_t>;

  // The metric series of one message type ("unknown" for types no handler here knows), looked
  // up once at start-up so that the hot path counts through plain pointers. All are written by
  // the poll thread only (a handler's duration is measured on its thread and observed here).
  struct TypeSeries {
    metrics::Counter* acked = nullptr;
    metrics::Counter* skipped = nullptr;
    metrics::Counter* retried = nullptr;
    metrics::Counter* dead_lettered = nullptr;
    metrics::Counter* abandoned = nullptr;
    metrics::Histogram* duration = nullptr;
    std::string_view name;  // the map's key
    // Counted on the poll thread since its last flush (FlushCounts), without an atomic per record.
    std::uint64_t acked_here = 0;
    std::uint64_t skipped_here = 0;
  };

  // One delivery handed to the handler pool. The handler thread writes `result` and `ran`, then
  // posts the attempt back; the poll thread reads them only after that.
  struct Attempt {
    explicit Attempt(const std::atomic<bool>* revoked_flag) : revoked(revoked_flag) {}
    Visibility visibility;  // deadline set when the handler starts
    MessagePtr msg;         // keeps the record alive while it runs, even past a revocation
    // The partition was given away: do not start. Flags live as long as the worker (revoked_flags).
    const std::atomic<bool>* revoked;
    std::uint64_t epoch = 0;
    std::int64_t offset = 0;
    // Valid while the partition of `epoch` is assigned and the run is not abandoned: only a
    // finished entry leaves its partition, and a running one finishes only through its result
    // or its abandonment.
    void* entry = nullptr;
    std::uint64_t run = 0;
    int delivery = 0;
    std::chrono::milliseconds timeout{0};
    Clock::time_point started{};   // written by the handler thread under its slot's lock
    bool ran = false;
    DispatchResult result;
    // Who ends the run first: the handler thread, by finishing (kFinished), or the poll thread,
    // by abandoning it (kAbandoned). The winner alone may touch the record's parsed headers.
    enum : int { kRunning, kFinished, kAbandoned };
    std::atomic<int> claim{kRunning};
    SlotHold slot;  // taken for this run (DeliveryPolicy::slots); the handler may keep it
    // The record's type, set by the handler thread before the handler starts (so that a run
    // abandoned while it runs is counted under its type), and how long the handler took.
    std::atomic<TypeSeries*> series{nullptr};
    double seconds = 0;
    // Poll thread only:
    bool abandoned = false;
    Clock::time_point stuck_at = Clock::time_point::max();
  };
  using AttemptPtr = std::shared_ptr<Attempt>;

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
    int send_rounds = 0;                   // failed rounds of sending `outgoing`
    std::string tier_topic;
    std::string_view reason;
    std::string error;
    Clock::time_point due{};
    Clock::time_point not_before{};  // records of a retry tier: their due time
    SlotHold slot;                   // taken with the lease, handed to the run
  };

  // Who may run next for one ordering key: the holder, then the parked records in offset order.
  // (A vector and a head index, not a deque: a deque allocates when constructed, and nearly
  // every key comes and goes without parking anything.)
  struct KeySlot {
    std::vector<Entry*> parked;
    std::size_t head = 0;
  };

  struct Partition {
    // Its records and keys come and go with every message: they take their memory from the
    // worker's pool (Impl::pool), which recycles it without going through malloc.
    explicit Partition(std::pmr::memory_resource* mr) : entries(mr), keys(mr) {}
    std::string topic;
    std::int32_t partition = 0;
    bool tier = false;  // a retry tier topic of this group: records wait until due
    std::pmr::deque<Entry> entries;
    std::size_t scan = 0;             // entries before it were looked at for dispatch
    std::int64_t commit_next = -1;    // next offset to commit; -1: nothing finished yet
    std::int64_t committed = -1;      // last commit the broker accepted
    // Why fetching should stop; `paused` is what librdkafka was last told (see UpdatePause).
    bool full = false;       // too many records buffered (until it drains to half)
    bool head_wait = false;  // the head of a retry tier is not due yet
    bool starved = false;    // its next record finds no free slot (DeliveryPolicy::slots)
    bool paused = false;
    // For the stall check (CheckStalls): when it last received or finished a record.
    Clock::time_point moved{};
    bool stall_reported = false;
    std::int64_t start = -1;        // the committed offset found at assignment, -1 for none
    std::int64_t next_offset = -1;  // after the last record received
    std::uint64_t epoch = 0;  // unique per assignment: late reports must not match
    std::shared_ptr<std::atomic<bool>> revoked = std::make_shared<std::atomic<bool>>(false);
    std::deque<Entry*> need_lease;  // may run once leased
    std::vector<Entry*> waits;      // kWaiting
    std::pmr::unordered_map<std::pmr::string, KeySlot, StringHash, std::equal_to<>> keys;  // held keys
    int in_flight = 0;      // leased runs not finished (queued in the pool or running)
    int suspects_out = 0;   // suspects leased and not finished: nothing else is leased meanwhile
    // The previous owner's ledger, read at assignment: counts per offset, and whether it left
    // cleanly (a dirty ledger means deliveries may have been running when it died).
    std::map<std::int64_t, int> prior;
    bool dirty_takeover = false;
    std::string committed_metadata;  // the ledger text of the last accepted commit
    // Its series (looked up at assignment): records received, and the consumer lag.
    metrics::Counter* received = nullptr;
    metrics::Gauge* lag = nullptr;
  };

  struct TpLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::tie(a.first, a.second) < std::tie(b.first, b.second);
    }
  };
  using TpKey = std::pair<std::string, std::int32_t>;
  using TpView = std::pair<std::string_view, std::int32_t>;

  // What one handler thread is running, for the visibility and stuck checks.
  struct Slot {
    std::mutex mu;
    AttemptPtr current;
    std::vector<AttemptPtr> pending;  // the chunk it took; [next, end) not started yet
    std::size_t next = 0;
    std::vector<AttemptPtr> finished;  // runs of the chunk done, not posted yet
  };

  Impl(WorkerConfig c, const HandlerRegistry& h)
      : config(std::move(c)), handlers(h), dispatcher(h), rng(std::random_device{}()) {
    for (const auto& tier : config.retry_tiers) tier_topics.insert(RetryTierTopic(config.group, tier));
    for (const auto& route : handlers.Routes()) {
      const DeliveryPolicy& p = route->policy;
      if (p.visibility_timeout) typed_visibility = true;
      if (p.slots) slot_pools.push_back(p.slots);
      if (p.retry_tiers) {
        for (const auto& tier : *p.retry_tiers) tier_topics.insert(RetryTierTopic(config.group, tier));
      }
    }
  }

  ~Impl() {
    DetachSlots();
    StopPool();
  }

  WorkerConfig config;
  const HandlerRegistry& handlers;
  Dispatcher dispatcher;
  std::string host;
  detail::RdKafkaPtr consumer;
  detail::RdQueuePtr consumer_queue;  // to wake the poll thread when results arrive
  std::unique_ptr<Producer> producer;
  std::atomic<bool> stop{false};
  std::uint64_t next_epoch = 1;
  // Partitions' records and keys (single-threaded: the poll thread's). Before `partitions`,
  // which use it.
  std::pmr::unsynchronized_pool_resource pool;
  std::map<TpKey, Partition, TpLess> partitions;
  std::vector<TopicPartition> hooked;  // reported to on_assigned, not yet to on_revoked
  std::unordered_map<std::uint64_t, Partition*> live;  // by epoch
  std::set<std::string> tier_topics;
  // Every assignment's revoked flag, kept for the worker's life: runs queued for a partition
  // that is gone still read theirs (one flag per assignment, so a few bytes per rebalance).
  std::vector<std::shared_ptr<std::atomic<bool>>> revoked_flags;
  bool typed_visibility = false;  // some type sets its own visibility timeout
  // Slots of the types that need them, and how a slot given back wakes the poll thread.
  struct SlotWake {
    std::mutex mu;
    rd_kafka_queue_t* queue = nullptr;  // null once the worker is stopping
    std::atomic<bool> freed{false};
    void Signal() {
      freed.store(true);
      std::lock_guard lock(mu);
      if (queue != nullptr) rd_kafka_queue_yield(queue);
    }
  };
  std::vector<std::shared_ptr<Slots>> slot_pools;
  std::shared_ptr<SlotWake> slot_wake = std::make_shared<SlotWake>();
  std::vector<HeaderView> header_buf;
  std::mt19937_64 rng;
  int pending_sends = 0;
  Clock::time_point next_commit{};
  Clock::time_point next_stall_check{};
  Clock::time_point turn_start{};  // when this turn's poll returned: one clock read a turn, for `moved`
  // When LeaseAndPump must run next: the earliest due retry or tier head, max() when none.
  Clock::time_point next_due = Clock::time_point::max();
  bool lease_wanted = false;  // a record became runnable
  static constexpr int kMaxWave = 4000;
  static constexpr std::size_t kLeaseWaves = 16;
  // Leased runs per partition not finished yet: a crash charges each of them one delivery.
  static constexpr int kMaxInFlight = 4000;
  // How soon to try again when the broker refused a lease commit (e.g. during a rebalance).
  static constexpr std::chrono::milliseconds kLeaseRetry{100};
  // How often to look whether the runs a waiting suspect waits for have finished.
  static constexpr std::chrono::milliseconds kSuspectDrainCheck{10};
  // The shortest wait before a failed send (outgoing messages, or a copy) is sent again.
  static constexpr std::chrono::milliseconds kMinSendRetry{1000};
  // A handler still running this many visibility timeouts after it started is stuck.
  static constexpr int kStuckFactor = 3;

  // Fast path for the common case of many records in a row from one partition.
  const rd_kafka_topic_t* last_rkt = nullptr;
  std::int32_t last_partition = -1;
  Partition* last = nullptr;  // reset whenever `partitions` changes

  // The handler pool.
  std::vector<std::thread> threads;
  std::unique_ptr<Slot[]> slots;
  std::mutex pool_mu;
  std::condition_variable pool_cv;
  std::deque<AttemptPtr> pool_queue;  // only the queue itself: chunks are taken in order
  // Records the poll thread is done with, for a handler thread to release (see Bury).
  std::vector<MessagePtr> pool_graves;
  std::atomic<std::size_t> queued_runs{0};  // pool_queue.size(), readable without the lock
  bool pool_stop = false;
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::vector<AttemptPtr> done;
  std::atomic<bool> results_ready{false};  // `done` may be non-empty
  std::atomic<bool> poll_idle{false};      // the poll thread is (about to be) blocked in poll

  // Written only by the poll thread, read by Stats() from any thread.
  std::atomic<std::uint64_t> handled{0}, skipped{0}, retried{0}, dead_lettered{0}, committed{0},
      abandoned{0}, delayed{0};
  // One writer, so a plain load and store is enough, without a locked read-modify-write.
  static void Count(std::atomic<std::uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  std::atomic<std::uint32_t> assigned{0};
  std::atomic<std::uint32_t> stalled{0};  // partitions CheckStalls found stalled
  std::atomic<std::int32_t> paused_count{0};  // partitions with `paused` set

  // Operations: where the worker reports, and the port serving it (docs/operations.md). Last,
  // so that the server stops first and nothing serves a half-destroyed worker.
  std::shared_ptr<metrics::Registry> metrics;
  std::shared_ptr<health::Board> board;
  std::unique_ptr<ops::Server> server;
  // After the server, so that they go first: once they are destroyed, no scrape or probe reads
  // this worker any more.
  metrics::CollectorHandle collector;
  health::ProbeHandle probe;

  // ---- operations: metrics and the health probe (docs/operations.md) -------------------------

  // Series, looked up once (SetUpOperations) and then counted through these pointers.
  std::unordered_map<std::string, TypeSeries, StringHash, std::equal_to<>> type_series;
  TypeSeries* unknown_type = nullptr;
  std::vector<TypeSeries*> all_types;
  metrics::Family<metrics::Counter>* received_family = nullptr;
  metrics::Family<metrics::Gauge>* lag_family = nullptr;
  metrics::Counter* retries_worker = nullptr;
  metrics::Counter* retries_tier = nullptr;
  std::vector<std::pair<std::string_view, metrics::Counter*>> dead_letter_reasons;
  metrics::Counter* dead_letters_other = nullptr;
  metrics::Counter* commits_ok = nullptr;
  metrics::Counter* commits_failed = nullptr;
  metrics::Counter* rebalances_assigned = nullptr;
  metrics::Counter* rebalances_revoked = nullptr;
  metrics::Counter* rebalances_lost = nullptr;
  metrics::Gauge* runs_gauge = nullptr;
  metrics::Gauge* assigned_gauge = nullptr;
  metrics::Gauge* paused_gauge = nullptr;
  metrics::Gauge* stalled_gauge = nullptr;
  Clock::time_point next_lag_update{};
  static constexpr std::chrono::seconds kLagInterval{1};

  // What the probe reads, written by the poll thread.
  std::atomic<Clock::rep> last_turn{Clock::now().time_since_epoch().count()};
  std::atomic<bool> run_ended{false};
  // From librdkafka's statistics (OnStats): the connection to the group coordinator is up, and
  // the member has joined the group since it last lost its membership.
  bool stats_enabled = true;
  std::atomic<bool> coordinator_up{false};
  std::atomic<bool> joined{false};
  mutable std::mutex group_state_mu;
  std::string group_state = "init";  // librdkafka's "<state>/<join state>" of the group
  // For the "waiting for the brokers" line: since when the coordinator is not reachable.
  Clock::time_point unreachable_since{};
  Clock::time_point next_wait_log{};
  bool wait_logged = false;
  std::string last_error;  // the last error librdkafka reported, for that line
  // The broker is unreachable this long before the worker says it waits for it, then again
  // every kWaitLogEvery while it lasts.
  static constexpr std::chrono::seconds kWaitLogAfter{3};
  static constexpr std::chrono::seconds kWaitLogEvery{30};
  // Liveness: the poll loop has turned within max(kMinPollSilence, 3 session timeouts).
  static constexpr std::chrono::seconds kMinPollSilence{30};

  // Registers the worker's metric families and series, its collector and its health probe.
  void SetUpOperations() {
    metrics::Registry& r = *metrics;
    const std::string& g = config.group;
    auto& handled_family = r.AddCounter(
        "kbus_worker_records_handled_total",
        "Deliveries by outcome: acked, skipped (an event type nobody here handles), retried, "
        "dead_lettered (the copy acknowledged by the dead-letter topic), abandoned (outlived its "
        "visibility timeout; what follows is counted too)",
        {"group", "type", "outcome"});
    auto& duration_family =
        r.AddHistogram("kbus_worker_handler_duration_seconds", "How long handler runs took",
                       {"group", "type"}, metrics::DurationBuckets());
    auto series_of = [&](std::string_view type) {
      TypeSeries t;
      t.acked = &handled_family.With({g, type, "acked"});
      t.skipped = &handled_family.With({g, type, "skipped"});
      t.retried = &handled_family.With({g, type, "retried"});
      t.dead_lettered = &handled_family.With({g, type, "dead_lettered"});
      t.abandoned = &handled_family.With({g, type, "abandoned"});
      t.duration = &duration_family.With({g, type});
      return t;
    };
    for (const auto* route : handlers.Routes()) type_series.emplace(route->type, series_of(route->type));
    unknown_type = &type_series.emplace(std::string(kUnknownType), series_of(kUnknownType)).first->second;
    for (auto& [name, t] : type_series) {
      t.name = name;
      all_types.push_back(&t);
    }

    received_family = &r.AddCounter("kbus_worker_records_received_total", "Records fetched from the broker",
                                    {"group", "topic"});
    lag_family = &r.AddGauge("kbus_worker_consumer_lag",
                             "Records of an assigned partition not finished yet: its high watermark "
                             "minus the offset the worker commits next",
                             {"group", "topic", "partition"});
    auto& retries = r.AddCounter("kbus_worker_retries_total",
                                 "Failed deliveries scheduled again, in the worker or through a retry tier topic",
                                 {"group", "where"});
    retries_worker = &retries.With({g, "worker"});
    retries_tier = &retries.With({g, "tier"});
    auto& dead_letters = r.AddCounter("kbus_worker_dead_letters_total",
                                      "Records whose dead-letter copy the broker acknowledged, by reason",
                                      {"group", "reason"});
    for (std::string_view reason :
         {reason::kDecodeError, reason::kUnknownType, reason::kRejected, reason::kNonRetryable,
          reason::kVisibilityTimeout, reason::kHandlerError, reason::kMaxDeliveries, reason::kSuspectedCrash,
          reason::kPublishError, std::string_view("workflow-not-found"), std::string_view("workflow-id-missing")}) {
      dead_letter_reasons.emplace_back(reason, &dead_letters.With({g, reason}));
    }
    dead_letters_other = &dead_letters.With({g, "other"});
    auto& commits = r.AddCounter("kbus_worker_commits_total",
                                 "Offset commits (the periodic ones and the leases that count deliveries), by result",
                                 {"group", "result"});
    commits_ok = &commits.With({g, "ok"});
    commits_failed = &commits.With({g, "failed"});
    auto& rebalances = r.AddCounter("kbus_worker_rebalances_total", "Rebalance events of this member",
                                    {"group", "event"});
    rebalances_assigned = &rebalances.With({g, "assigned"});
    rebalances_revoked = &rebalances.With({g, "revoked"});
    rebalances_lost = &rebalances.With({g, "lost"});
    runs_gauge = &r.AddGauge("kbus_worker_runs_in_flight", "Handler runs executing now", {"group"}).With({g});
    assigned_gauge = &r.AddGauge("kbus_worker_assigned_partitions", "Partitions assigned to this member",
                                 {"group"}).With({g});
    paused_gauge = &r.AddGauge("kbus_worker_paused_partitions",
                               "Assigned partitions not fetched now: buffer full, retry tier wait, or no free slot",
                               {"group"}).With({g});
    stalled_gauge = &r.AddGauge("kbus_worker_stalled_partitions",
                                "Assigned partitions that have work but have not moved for stall_warning",
                                {"group"}).With({g});
    collector = r.OnCollect([this] {
      runs_gauge->Set(static_cast<double>(RunningHandlers()));
      assigned_gauge->Set(assigned.load(std::memory_order_relaxed));
      paused_gauge->Set(std::max(0, paused_count.load(std::memory_order_relaxed)));
      stalled_gauge->Set(stalled.load(std::memory_order_relaxed));
    });
    probe = board->Add("worker " + g, [this] { return Probe(); });
  }

  static constexpr std::string_view kUnknownType = "unknown";

  // The series of a message type (TypeFor below), for a handler thread that remembers the last
  // type it saw: runs of one type tend to come in a row, and a string compare is cheaper than a
  // hash lookup.
  TypeSeries& TypeFor(std::optional<std::string_view> type, TypeSeries*& last) {
    if (last == nullptr || !type || last->name != *type) last = &TypeFor(type);
    return *last;
  }
  // Moves what the poll thread counted in plain fields to the series: once a turn, and before a
  // rebalance drops partitions.
  void FlushCounts() {
    for (TypeSeries* t : all_types) {
      if (t->acked_here > 0) t->acked->Inc(std::exchange(t->acked_here, 0));
      if (t->skipped_here > 0) t->skipped->Inc(std::exchange(t->skipped_here, 0));
    }
    if (received_in != nullptr) {
      received_in->received->Inc(std::exchange(received_here, 0));
      received_in = nullptr;
    }
  }
  // Records received since the last flush, all from `received_in` (a wave comes mostly from one
  // partition at a time).
  Partition* received_in = nullptr;
  std::uint64_t received_here = 0;
  void CountReceived(Partition& p) {
    if (received_in != &p) {
      if (received_in != nullptr) received_in->received->Inc(received_here);
      received_in = &p;
      received_here = 0;
    }
    ++received_here;
  }

  // The series of a message type; "unknown" for a type no handler here is registered for, so
  // that the label's values stay bounded whatever arrives.
  TypeSeries& TypeFor(std::optional<std::string_view> type) {
    if (type) {
      if (auto it = type_series.find(*type); it != type_series.end()) return it->second;
    }
    return *unknown_type;
  }
  TypeSeries& TypeOf(const Attempt& a) {
    TypeSeries* t = a.series.load(std::memory_order_acquire);
    return t != nullptr ? *t : *unknown_type;
  }

  metrics::Counter& DeadLetterCounter(std::string_view why) {
    for (auto& [name, counter] : dead_letter_reasons) {
      if (name == why) return *counter;
    }
    return *dead_letters_other;
  }

  // Handler runs executing now (abandoned ones that still run included). Any thread.
  std::int64_t RunningHandlers() const {
    std::int64_t n = 0;
    for (int i = 0; i < config.handler_threads; ++i) {
      Slot& slot = slots[static_cast<std::size_t>(i)];
      std::lock_guard lock(slot.mu);
      n += slot.current ? 1 : 0;
    }
    return n;
  }

  // A run past kStuckFactor visibility timeouts (the poll thread exits the process for it when
  // it sees it), as a duration past that limit; zero when none. Any thread.
  Clock::duration StuckFor(Clock::time_point now) const {
    Clock::duration worst{0};
    for (int i = 0; i < config.handler_threads; ++i) {
      Slot& slot = slots[static_cast<std::size_t>(i)];
      std::lock_guard lock(slot.mu);
      if (!slot.current) continue;
      const auto deadline = slot.current->visibility.deadline();
      if (deadline == Clock::time_point::max()) continue;
      const auto limit = slot.current->started + (deadline - slot.current->started) * kStuckFactor;
      if (now > limit) worst = std::max(worst, now - limit);
    }
    return worst;
  }

  // The worker's health (docs/operations.md), on the thread asking.
  health::Report Probe() const {
    health::Report r;
    const auto now = Clock::now();
    const auto silence = now - Clock::time_point(Clock::duration(last_turn.load(std::memory_order_relaxed)));
    const auto silence_limit = std::max<Clock::duration>(kMinPollSilence, 3 * config.session_timeout);
    const bool ended = run_ended.load(std::memory_order_relaxed);
    std::string state;
    {
      std::lock_guard lock(group_state_mu);
      state = group_state;
    }
    const bool stopping = stop.load(std::memory_order_relaxed) || ended;
    // While stopping, the loop drains on purpose (bounded by shutdown_grace): not a hang.
    if (!stopping && silence > silence_limit) {
      r.live = false;
      r.reason = "the poll loop has not turned for " +
                 std::to_string(std::chrono::duration_cast<std::chrono::seconds>(silence).count()) + " s";
    } else if (const auto stuck = StuckFor(now); stuck > Clock::duration::zero()) {
      r.live = false;
      r.reason = "a handler has run past " + std::to_string(kStuckFactor) + " visibility timeouts";
    }
    const bool reachable = !stats_enabled || coordinator_up.load(std::memory_order_relaxed);
    const bool in_group = joined.load(std::memory_order_relaxed);
    r.ready = r.live && !stopping && reachable && in_group;
    if (r.reason.empty()) {
      if (stopping) {
        r.reason = "the worker is stopping";
      } else if (!reachable) {
        r.reason = "the group coordinator is not reachable (brokers " + config.client.brokers + ")";
      } else if (!in_group) {
        r.reason = "the group is not joined yet (group state " + state + ")";
        // librdkafka joins only once a subscribed topic exists.
        if (state == "up/init") r.reason += ": do the worker's topics exist?";
      }
    }
    r.active_work = RunningHandlers();
    r.details.emplace_back("group", config.group);
    r.details.emplace_back("group_state", state);
    r.details.emplace_back("assigned_partitions", static_cast<std::int64_t>(assigned.load(std::memory_order_relaxed)));
    r.details.emplace_back("active_runs", r.active_work);
    r.details.emplace_back("paused_partitions",
                           static_cast<std::int64_t>(std::max(0, paused_count.load(std::memory_order_relaxed))));
    r.details.emplace_back("stalled_partitions", static_cast<std::int64_t>(stalled.load(std::memory_order_relaxed)));
    return r;
  }

  // Sets each assigned partition's lag: its high watermark (as librdkafka last heard it) minus
  // where the next commit points. Poll thread.
  void UpdateLag(Clock::time_point now) {
    next_lag_update = now + kLagInterval;
    for (auto& [key, p] : partitions) {
      if (p.lag == nullptr) continue;
      std::int64_t low = -1, high = -1;
      if (rd_kafka_get_watermark_offsets(consumer.get(), p.topic.c_str(), p.partition, &low, &high) !=
              RD_KAFKA_RESP_ERR_NO_ERROR ||
          high < 0) {
        continue;  // not fetched yet: nothing known
      }
      std::int64_t position = CommitOffset(p);
      if (position < 0) position = p.start >= 0 ? p.start : low;  // auto.offset.reset=earliest
      if (position < 0) continue;
      p.lag->Set(static_cast<double>(std::max<std::int64_t>(0, high - position)));
    }
  }

  static void ErrorTrampoline(rd_kafka_t*, int err, const char* reason, void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->OnError(static_cast<rd_kafka_resp_err_t>(err), reason);
    } catch (...) {  // nothing may leave a C callback
    }
  }

  // A client-level error, on the poll thread. Unreachable brokers are librdkafka's own log lines
  // and the "waiting for the brokers" line (OnStats), which names the last error; the rest are
  // logged here.
  void OnError(rd_kafka_resp_err_t err, const char* reason) {
    last_error = reason != nullptr ? reason : rd_kafka_err2str(err);
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        err == RD_KAFKA_RESP_ERR__RESOLVE) {
      return;
    }
    Log(err == RD_KAFKA_RESP_ERR__FATAL ? LogLevel::kError : LogLevel::kWarn, "consumer error",
        {{"group", config.group}, {"error", last_error}, {"code", rd_kafka_err2name(err)}});
  }

  static int StatsTrampoline(rd_kafka_t*, char* json, size_t json_len, void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->OnStats(std::string_view(json, json_len));
    } catch (...) {  // nothing may leave a C callback; a missed statistics round is harmless
    }
    return 0;  // librdkafka frees the text
  }

  // The string value of `"key": "` after position `from` in librdkafka's statistics text.
  static std::string_view StatsString(std::string_view json, std::string_view key, std::size_t from) {
    const std::string pattern = "\"" + std::string(key) + "\": \"";
    const std::size_t at = json.find(pattern, from);
    if (at == std::string_view::npos) return {};
    const std::size_t start = at + pattern.size();
    const std::size_t end = json.find('"', start);
    return end == std::string_view::npos ? std::string_view() : json.substr(start, end - start);
  }

  // librdkafka's statistics, every second on the poll thread: its consumer group state says
  // whether the group coordinator's connection is up ("up") and the member is in the group
  // ("steady"); readiness follows them. A long wait for the brokers is logged.
  void OnStats(std::string_view json) {
    const std::size_t cgrp = json.find("\"cgrp\": {");
    if (cgrp == std::string_view::npos) return;
    const std::string_view state = StatsString(json, "state", cgrp);
    const std::string_view join_state = StatsString(json, "join_state", cgrp);
    const bool up = state == "up";
    coordinator_up.store(up, std::memory_order_relaxed);
    if (up && join_state == "steady") joined.store(true, std::memory_order_relaxed);
    {
      std::lock_guard lock(group_state_mu);
      group_state.assign(state).append("/").append(join_state);
    }
    const auto now = Clock::now();
    if (up) {
      if (wait_logged) {
        Log(LogLevel::kInfo, "brokers reachable again",
            {{"group", config.group},
             {"seconds", std::chrono::duration_cast<std::chrono::seconds>(now - unreachable_since).count()}});
      }
      unreachable_since = {};
      wait_logged = false;
      return;
    }
    if (unreachable_since == Clock::time_point{}) unreachable_since = now;
    if (now - unreachable_since >= kWaitLogAfter && now >= next_wait_log) {
      next_wait_log = now + kWaitLogEvery;
      wait_logged = true;
      Log(LogLevel::kWarn, "waiting for the brokers: the group coordinator is not reachable; retrying",
          {{"group", config.group}, {"brokers", config.client.brokers},
           {"seconds", std::chrono::duration_cast<std::chrono::seconds>(now - unreachable_since).count()},
           {"group_state", std::string(state) + "/" + std::string(join_state)},
           {"last_error", last_error}});
    }
  }

  // ---- set-up -------------------------------------------------------------------------------

  void Open() {
    auto props = ConsumerProperties(config);
    // The group's state for readiness (OnStats): a short text once a second, served on the
    // poll thread. A user who turns statistics off (-X statistics.interval.ms=0) gets readiness
    // from the rebalances alone.
    props["statistics.interval.ms"] = "1000";
    for (const auto& [k, v] : config.client.properties) props[k] = v;
    stats_enabled = props["statistics.interval.ms"] != "0";
    auto conf = detail::MakeConf(props);
    detail::RouteLogs(conf.get());
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::RebalanceTrampoline);
    if (stats_enabled) rd_kafka_conf_set_stats_cb(conf.get(), &Impl::StatsTrampoline);
    rd_kafka_conf_set_error_cb(conf.get(), &Impl::ErrorTrampoline);
    consumer = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
    // Serve logs, rebalances and commit results from rd_kafka_consumer_poll, on our thread.
    rd_kafka_poll_set_consumer(consumer.get());
    consumer_queue.reset(rd_kafka_queue_get_consumer(consumer.get()));
    if (!slot_pools.empty()) {
      {
        std::lock_guard lock(slot_wake->mu);
        slot_wake->queue = consumer_queue.get();
      }
      for (const auto& pool : slot_pools) {
        pool->SetListener([wake = slot_wake] { wake->Signal(); });
      }
    }

    ProducerConfig pc;
    pc.client = config.client;
    pc.client.client_id = config.client.client_id + "-out";
    pc.background_poll = false;  // delivery reports are served by Run()'s loop, on this thread
    producer = std::make_unique<Producer>(pc);

    std::vector<std::string> topics = handlers.Topics();
    for (const auto& t : config.extra_topics) topics.push_back(t);
    for (const auto& t : tier_topics) topics.push_back(t);
    std::sort(topics.begin(), topics.end());
    topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
    if (topics.empty()) {
      throw std::invalid_argument("worker has no topics: register a handler or set extra_topics");
    }
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
    for (const auto& t : topics) rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer.get(), list.get())) {
      throw std::runtime_error(std::string("cannot subscribe: ") + rd_kafka_err2str(err));
    }

    slots = std::make_unique<Slot[]>(static_cast<std::size_t>(config.handler_threads));
    for (int i = 0; i < config.handler_threads; ++i) {
      threads.emplace_back([this, i] { PoolLoop(slots[static_cast<std::size_t>(i)]); });
    }
    std::string joined;
    for (const auto& t : topics) joined += (joined.empty() ? "" : ",") + t;
    Log(LogLevel::kInfo, "worker started",
        {{"group", config.group}, {"topics", joined}, {"brokers", config.client.brokers},
         {"handler_threads", config.handler_threads}, {"ordering", OrderingName(config.ordering)}});
  }

  // ---- the handler pool -----------------------------------------------------------------------

  // A handler thread takes a few queued runs at a time (a share of the queue, at most
  // kMaxChunk) into its slot, so that the queue's lock is taken once per chunk. Runs of the chunk
  // that have not started when one of them turns out slow are taken back by the poll thread
  // (Reclaim), so a slow or stuck handler holds back nothing but itself.
  static constexpr std::size_t kMaxChunk = 16;
  static constexpr std::chrono::milliseconds kReclaimAfter{2};

  // How many runs a thread takes from a queue of `queued`: a share, so all threads get some.
  std::size_t ChunkSize(std::size_t queued) const {
    return std::clamp<std::size_t>(queued / (2 * static_cast<std::size_t>(config.handler_threads)), 1, kMaxChunk);
  }

  void PoolLoop(Slot& slot) {
    pthread_setname_np(pthread_self(), "kbus-handler");  // at most 15 characters
    std::vector<HeaderView> headers;
    TypeSeries* last_type = nullptr;
    std::vector<AttemptPtr> chunk;
    std::vector<MessagePtr> graves;
    for (;;) {
      {
        std::unique_lock lock(pool_mu);
        pool_cv.wait(lock, [&] { return pool_stop || !pool_queue.empty() || !pool_graves.empty(); });
        graves.swap(pool_graves);
        if (pool_queue.empty()) {
          if (!graves.empty()) {
            lock.unlock();
            graves.clear();
            continue;
          }
          return;  // stopping, and nothing left
        }
        const std::size_t n = ChunkSize(pool_queue.size());
        for (std::size_t i = 0; i < n; ++i) {
          chunk.push_back(std::move(pool_queue.front()));
          pool_queue.pop_front();
        }
        queued_runs.store(pool_queue.size(), std::memory_order_relaxed);
      }
      graves.clear();  // outside the lock: destroying records is the costly part
      {
        std::lock_guard lock(slot.mu);
        slot.pending.swap(chunk);
        slot.next = 0;
      }
      for (;;) {
        AttemptPtr a;
        {
          std::lock_guard lock(slot.mu);
          if (slot.next >= slot.pending.size()) {
            slot.pending.clear();
            slot.next = 0;
            chunk.swap(slot.finished);  // posted below, outside the slot's lock
            break;
          }
          a = std::move(slot.pending[slot.next++]);
          if (a->revoked->load(std::memory_order_acquire)) {  // not run: the partition is going
            a->slot.Release();
            slot.finished.push_back(std::move(a));
            continue;
          }
          a->started = Clock::now();
          a->visibility.Extend(a->timeout);
          slot.current = std::move(a);  // moved, not copied: no reference count per run
        }
        RunOne(*slot.current, headers, last_type);  // only this thread replaces slot.current
        Finished(*slot.current);
        std::lock_guard lock(slot.mu);
        slot.finished.push_back(std::move(slot.current));
      }
      Post(chunk);
    }
  }

  void RunOne(Attempt& a, std::vector<HeaderView>& headers, TypeSeries*& last_type) {
    try {
      const InboundRecord record = ViewRecord(a.msg.get(), headers);
      a.series.store(&TypeFor(record.FindHeader(header::kType), last_type), std::memory_order_release);
      a.result = dispatcher.Dispatch(record, a.delivery, &a.visibility, &a.slot);
    } catch (const std::exception& e) {  // e.g. bad_alloc outside the handler
      a.result = DispatchResult{};
      a.result.kind = DispatchResult::Kind::kRetry;
      a.result.error = std::string("dispatch failed: ") + e.what();
    }
    a.slot.Release();  // unless the handler kept it
    a.seconds = std::chrono::duration<double>(Clock::now() - a.started).count();
    a.ran = true;
  }

  // The handler returned: unless the poll thread abandoned the run first, its result stands,
  // however late the poll thread gets to it.
  // After a run that succeeded nothing reads the record's parsed headers (librdkafka parses
  // them on first use); a record sent on later (a retry, a dead letter) has them parsed again.
  // Freed here, by the thread that parsed them, their memory serves the next record's parse.
  // Not when the poll thread abandoned this run (it reads them to decide what follows), nor when
  // another run of the record may still read them (an abandoned one holds a reference too).
  void Finished(Attempt& a) {
    int expected = Attempt::kRunning;
    if (!a.claim.compare_exchange_strong(expected, Attempt::kFinished)) return;
    if (a.result.kind != DispatchResult::Kind::kAck && a.result.kind != DispatchResult::Kind::kSkip) return;
    if (a.msg.use_count() != 2) return;  // the entry's reference and this run's
    rd_kafka_message_set_headers(a.msg.get(), nullptr);
  }

  // Hands finished runs to the poll thread, and wakes it only if it is blocked waiting for
  // records.
  void Post(std::vector<AttemptPtr>& finished) {
    if (finished.empty()) return;
    bool was_empty = false;
    {
      std::lock_guard lock(done_mu);
      was_empty = done.empty();
      for (auto& a : finished) done.push_back(std::move(a));
    }
    finished.clear();
    results_ready.store(true);  // seq_cst, paired with poll_idle in Run()
    if (was_empty) done_cv.notify_one();
    if (poll_idle.load()) rd_kafka_queue_yield(consumer_queue.get());
  }

  // When a slot's current run is slow: its chunk's runs that have not started go back to the
  // head of the queue, for the other threads, and the finished ones are taken (returned), so a
  // slow or stuck handler holds back nothing but itself. Poll thread only.
  std::vector<AttemptPtr> Reclaim(Slot& slot, Clock::time_point now) {
    std::vector<AttemptPtr> finished;
    std::vector<AttemptPtr> back;
    {
      std::lock_guard lock(slot.mu);
      if (!slot.current || now - slot.current->started < kReclaimAfter) return finished;
      for (std::size_t i = slot.next; i < slot.pending.size(); ++i) back.push_back(std::move(slot.pending[i]));
      slot.pending.resize(slot.next);
      finished.swap(slot.finished);
    }
    if (!back.empty()) {
      {
        std::lock_guard lock(pool_mu);
        for (auto it = back.rbegin(); it != back.rend(); ++it) pool_queue.push_front(std::move(*it));
        queued_runs.store(pool_queue.size(), std::memory_order_relaxed);
      }
      pool_cv.notify_all();
    }
    return finished;
  }

  // The run handler thread `i` is in now, if any; the copy keeps it alive. Poll thread only.
  AttemptPtr Current(int i) {
    Slot& slot = slots[static_cast<std::size_t>(i)];
    std::lock_guard lock(slot.mu);
    return slot.current;
  }

  void ReclaimAll(Clock::time_point now) {
    for (int i = 0; i < config.handler_threads; ++i) {
      for (auto& a : Reclaim(slots[static_cast<std::size_t>(i)], now)) OnResult(*a);
    }
  }

  void Submit(std::vector<AttemptPtr>& batch) {
    if (batch.empty()) return;
    std::size_t queued = 0;
    {
      std::lock_guard lock(pool_mu);
      HandOverGraves();
      for (auto& a : batch) pool_queue.push_back(std::move(a));
      queued = pool_queue.size();
      queued_runs.store(queued, std::memory_order_relaxed);
    }
    // Wake as many threads as there are chunks to take (ChunkSize), no more: a thread that
    // takes one run may be stuck in it, so every run needs a thread of its own to be awake.
    const std::size_t chunk = ChunkSize(queued);
    const std::size_t wake = std::min<std::size_t>(static_cast<std::size_t>(config.handler_threads),
                                                   (queued + chunk - 1) / chunk);
    if (wake >= static_cast<std::size_t>(config.handler_threads)) {
      pool_cv.notify_all();
    } else {
      for (std::size_t i = 0; i < std::max<std::size_t>(wake, 1); ++i) pool_cv.notify_one();
    }
    batch.clear();
  }

  // A record the poll thread is done with. Its header list was allocated by the handler thread
  // that parsed it (librdkafka parses headers on first use), so a handler thread releases it
  // too: freed by the poll thread, every record's allocations crossed threads, which glibc's
  // per-thread caches cannot absorb, and the poll thread spent a third of its time in free()
  // (measured with the throughput benchmark). They go over in batches, with the next runs or
  // on their own (FlushGraves); a record can pin a whole fetch response, so none lingers.
  void Bury(MessagePtr m) {
    if (!m) return;
    graveyard.push_back(std::move(m));
    if (graveyard.size() >= kGraveBatch) FlushGraves();
  }
  void FlushGraves() {
    if (graveyard.empty()) return;
    bool idle = false;
    {
      std::lock_guard lock(pool_mu);
      HandOverGraves();
      idle = pool_queue.empty();
    }
    if (idle) pool_cv.notify_one();  // no thread is about to take a chunk, and them with it
  }
  // Under pool_mu.
  void HandOverGraves() {
    pool_graves.insert(pool_graves.end(), std::make_move_iterator(graveyard.begin()),
                       std::make_move_iterator(graveyard.end()));
    graveyard.clear();
  }
  static constexpr std::size_t kGraveBatch = 256;
  std::vector<MessagePtr> graveyard;  // poll thread only

  void StopPool() {
    {
      std::lock_guard lock(pool_mu);
      pool_stop = true;
    }
    pool_cv.notify_all();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
  }

  // ---- the loop -----------------------------------------------------------------------------

  // Each turn takes what the consumer has ready (up to kMaxWave records), serves the results of
  // the handler threads, abandons runs past their deadline, and, when the pool runs low, leases
  // the next batch: one commit counts the deliveries of what is about to run before any of it
  // runs.
  void Run() {
    next_commit = Clock::now() + config.commit_interval;
    while (!stop.load(std::memory_order_relaxed)) {
      int taken = 0;
      int timeout = PollTimeoutMs();
      if (timeout > 0) {
        poll_idle.store(true);
        if (results_ready.load()) timeout = 0;  // posted before poll_idle was seen
      }
      rd_kafka_message_t* first = rd_kafka_consumer_poll(consumer.get(), timeout);
      poll_idle.store(false, std::memory_order_relaxed);
      turn_start = Clock::now();
      last_turn.store(turn_start.time_since_epoch().count(), std::memory_order_relaxed);
      for (rd_kafka_message_t* m = first; m != nullptr; m = rd_kafka_consumer_poll(consumer.get(), 0)) {
        OnMessage(RdMessagePtr(m));
        if (++taken >= kMaxWave) break;
      }
      ProcessResults();
      if (taken == 0) FlushGraves();
      if (!slot_pools.empty() && slot_wake->freed.exchange(false)) OnSlotsFreed();
      if (pending_sends > 0) producer->Poll(std::chrono::milliseconds(0));
      const auto now = Clock::now();
      CheckHandlers(now);
      if (((taken > 0 || lease_wanted) && PoolHungry()) || now >= next_due) LeaseAndPump(now);
      if (now >= next_commit) {
        CommitAll(/*clean=*/false);
        next_commit = now + config.commit_interval;
      }
      if (now >= next_stall_check) CheckStalls(now);
      if (now >= next_lag_update) UpdateLag(now);
      FlushCounts();
    }
    Shutdown();
    run_ended.store(true, std::memory_order_relaxed);
  }

  // Lease rounds cost a commit each, so records are leased in batches: when the pool's queue
  // runs low, not whenever one record could run.
  bool PoolHungry() const {
    const std::size_t low_water = 1024 + static_cast<std::size_t>(config.handler_threads) * kMaxChunk;
    return queued_runs.load(std::memory_order_relaxed) < low_water;
  }

  int PollTimeoutMs() const {
    // Results wake the poll (rd_kafka_queue_yield). Otherwise a short wait keeps Stop() and the
    // visibility checks responsive; wake earlier for the earliest due retry.
    auto wait = std::chrono::milliseconds(100);
    if (pending_sends > 0) wait = std::chrono::milliseconds(5);
    if (lease_wanted && PoolHungry()) wait = std::chrono::milliseconds(0);
    if (next_due != Clock::time_point::max()) {
      const auto until = std::chrono::ceil<std::chrono::milliseconds>(next_due - Clock::now());
      wait = std::min(wait, std::max(until, std::chrono::milliseconds(0)));
    }
    return static_cast<int>(wait.count());
  }

  Partition* FindPartition(const rd_kafka_message_t* m) {
    if (last != nullptr && m->rkt == last_rkt && m->partition == last_partition) return last;
    auto it = partitions.find(TpView(rd_kafka_topic_name(m->rkt), m->partition));
    if (it == partitions.end()) return nullptr;
    last_rkt = m->rkt;
    last_partition = m->partition;
    last = &it->second;
    return last;
  }

  Partition* Live(std::uint64_t epoch) {
    auto it = live.find(epoch);
    return it == live.end() ? nullptr : it->second;
  }

  static Entry* FindEntry(Partition& p, std::int64_t offset) {
    auto it = std::lower_bound(p.entries.begin(), p.entries.end(), offset,
                               [](const Entry& e, std::int64_t o) { return e.offset < o; });
    return it == p.entries.end() || it->offset != offset ? nullptr : &*it;
  }

  void OnMessage(RdMessagePtr m) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      last_error = rd_kafka_message_errstr(m.get());
      Log(LogLevel::kWarn, "consumer error",
          {{"error", rd_kafka_message_errstr(m.get())},
           {"topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""}});
      return;
    }
    Partition* p = FindPartition(m.get());
    if (p == nullptr) return;  // no longer ours: the new owner reads it from the committed offset
    CountReceived(*p);
    Entry e;
    e.offset = m->offset;
    e.msg = MessagePtr(m.release(), &rd_kafka_message_destroy);
    if (p->tier) {
      // A retry: it was delivered before, and waits until its due time.
      e.deliveries = static_cast<int>(std::clamp<std::int64_t>(
          ParseInt(HeaderOf(*e.msg, header::kDeliveryCount)).value_or(0), 0, 1000000));
      const std::int64_t due_ms = ParseInt(HeaderOf(*e.msg, header::kRetryDue)).value_or(0);
      e.not_before = Clock::now() + std::chrono::milliseconds(std::clamp<std::int64_t>(
                                        due_ms - EpochMs(), 0, std::int64_t{24} * 3600 * 1000));
    }
    if (!p->prior.empty()) {
      if (auto it = p->prior.find(e.offset); it != p->prior.end()) {
        e.deliveries = std::max(e.deliveries, it->second);
        e.suspect = p->dirty_takeover;
        p->prior.erase(it);
      }
    }
    if (e.deliveries > 0 && e.deliveries >= MaxDeliveries(PolicyOf(*e.msg))) {
      // Its deliveries are used up, some perhaps by crashes: dead-letter it without running.
      e.copy = Entry::Copy::kDeadLetter;
      e.reason = e.suspect ? reason::kSuspectedCrash : reason::kMaxDeliveries;
      e.error = "delivered " + std::to_string(e.deliveries) + " times without finishing" +
                (e.suspect ? "; the last owner stopped uncleanly while it ran" : "");
    }
    p->next_offset = e.offset + 1;
    p->entries.push_back(std::move(e));
    p->moved = turn_start;
    if (!p->full && p->entries.size() >= config.max_buffered_per_partition) {
      p->full = true;
      UpdatePause(*p);
    }
  }

  // ---- choosing what runs -------------------------------------------------------------------

  // The ordering key of a record, or nullopt when it may run at any time.
  std::optional<std::string_view> OrderKey(const rd_kafka_message_t& m) const {
    switch (config.ordering) {
      case Ordering::kUnordered:
        return std::nullopt;
      case Ordering::kPartition:
        return std::string_view();
      case Ordering::kKey:
        if (m.key == nullptr) return std::nullopt;
        return std::string_view(static_cast<const char*>(m.key), m.key_len);
    }
    return std::nullopt;
  }

  // Looks at the records not looked at yet, in offset order: a record whose key is free takes
  // it and may run once leased; one whose key is held parks behind the holder. In a retry tier
  // the head waits for its due time, and the partition with it.
  void Examine(Partition& p, Clock::time_point now) {
    while (p.scan < p.entries.size()) {
      Entry& e = p.entries[p.scan];
      if (p.tier && e.not_before > now) {
        if (!p.head_wait) {
          p.head_wait = true;
          UpdatePause(p);
        }
        NoteWaiting(e.not_before);
        return;
      }
      ++p.scan;
      if (e.copy == Entry::Copy::kDeadLetter) {  // deliveries used up: no key, no lease
        SendDeadLetter(p, e);
        continue;
      }
      if (auto key = OrderKey(*e.msg)) {
        auto [it, inserted] = p.keys.try_emplace(std::pmr::string(*key, &pool));
        if (!inserted) {
          it->second.parked.push_back(&e);
          continue;
        }
        e.holds_key = true;
      }
      p.need_lease.push_back(&e);
    }
    if (p.head_wait) {
      p.head_wait = false;
      UpdatePause(p);
    }
  }

  // The record gives up its key: the next parked record of that key may run.
  void ReleaseKey(Partition& p, Entry& e) {
    if (!e.holds_key) return;
    e.holds_key = false;
    auto it = p.keys.find(*OrderKey(*e.msg));
    if (it == p.keys.end()) return;
    KeySlot& slot = it->second;
    if (slot.head == slot.parked.size()) {
      p.keys.erase(it);
      return;
    }
    Entry* next = slot.parked[slot.head++];
    next->holds_key = true;
    p.need_lease.push_back(next);
    lease_wanted = true;
  }

  // Counts the next deliveries of every partition in one lease commit, then hands them to the
  // handler threads. Up to kMaxInFlight leased runs per partition. A suspect (delivered before
  // an unclean takeover) is leased alone, and nothing else until it finished, so a record that
  // kills the process is pinpointed and charges its neighbours nothing.
  void LeaseAndPump(Clock::time_point now) {
    lease_wanted = false;
    next_due = Clock::time_point::max();
    std::vector<std::pair<Partition*, Entry*>>& leased = leased_buf;
    leased.clear();
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    // Runs leased and not started yet stay within kLeaseWaves waves in all: they are what a
    // crash charges, and what keeps running after the broker starts refusing commits in a
    // rebalance. Each partition gets a share of the room, and the first partition served
    // rotates. (Larger batches mean fewer lease commits: measured on real Kafka with 16 partitions,
    // whose commits take longer than the mock's, b/a was 0.46 with a cap of one wave, 0.59 with
    // four, 0.74 with none.)
    const std::size_t queued = queued_runs.load(std::memory_order_relaxed);
    const std::size_t wave = static_cast<std::size_t>(kMaxWave) * kLeaseWaves;
    const std::size_t room = queued < wave ? wave - queued : 0;
    const std::size_t share = std::max<std::size_t>(256, room / std::max<std::size_t>(1, partitions.size()));
    std::size_t left = room;
    // Suspects (records in flight when a previous owner died) run alone in the whole worker:
    // while one runs, or waits for its turn, nothing else is leased, and it is leased only once
    // every other run finished. So when a suspect crashes the process again, no other record is
    // charged for it: a record is charged at most one extra delivery, by the crash it was in
    // flight for before it became a suspect.
    bool suspect_out = false;
    int in_flight = 0;
    Partition* suspect_next = nullptr;
    for (auto& [key, p] : partitions) {
      Examine(p, now);
      in_flight += p.in_flight;
      suspect_out = suspect_out || p.suspects_out > 0;
      if (suspect_next == nullptr && !p.need_lease.empty() && p.need_lease.front()->suspect) suspect_next = &p;
    }
    const bool alone = suspect_out || suspect_next != nullptr;
    if (alone && !suspect_out && in_flight > 0) NoteWaiting(now + kSuspectDrainCheck);
    // What finished before the suspect runs is committed first: a crash in the suspect must not
    // run it again.
    if (alone && !suspect_out && in_flight == 0) CommitAll(/*clean=*/false);
    auto start = partitions.begin();
    std::advance(start, static_cast<std::ptrdiff_t>(lease_rotation++ % std::max<std::size_t>(1, partitions.size())));
    for (std::size_t i = 0; i < partitions.size(); ++i, ++start) {
      if (start == partitions.end()) start = partitions.begin();
      Partition& p = start->second;
      const std::size_t first = leased.size();
      const std::size_t quota = std::min(share, left);
      auto lease = [&](Entry* e) {
        if (!slot_pools.empty() && !TakeSlot(p, *e)) return false;
        e->ticket = true;
        ++e->deliveries;
        leased.emplace_back(&p, e);
        return true;
      };
      for (Entry* w : p.waits) {
        if (w->due > now) {
          NoteWaiting(w->due);
        } else if (w->copy != Entry::Copy::kNone) {
          lease_wanted = true;  // a copy to send again: no lease needed, sent below
        } else if (!alone && !p.starved && p.in_flight + static_cast<int>(leased.size() - first) < kMaxInFlight &&
                   leased.size() - first < quota) {
          lease(w);
        }
      }
      if (alone) {
        if (&p == suspect_next && !suspect_out && in_flight == 0 && !p.starved) lease(p.need_lease.front());
      } else if (p.suspects_out == 0 && !p.starved) {
        for (Entry* e : p.need_lease) {
          if (p.in_flight + static_cast<int>(leased.size() - first) >= kMaxInFlight) break;
          if (leased.size() - first >= quota) {
            lease_wanted = true;  // the rest on a later round
            break;
          }
          if (e->suspect) {  // runs alone, on a later round (see `alone`)
            lease_wanted = true;
            break;
          }
          if (!lease(e)) break;  // no free slot: the partition waits for one
        }
      }
      if (leased.size() == first) continue;
      std::int64_t covered = 0;
      std::string metadata = LedgerFor(p, /*clean=*/false, &covered);
      // A record whose count did not fit in the ledger is not leased: it waits for room.
      const auto beyond = std::stable_partition(leased.begin() + static_cast<std::ptrdiff_t>(first), leased.end(),
                                                [&](const auto& pe) { return pe.second->offset <= covered; });
      for (auto it = beyond; it != leased.end(); ++it) {
        it->second->ticket = false;
        --it->second->deliveries;
        it->second->slot.Release();
      }
      leased.erase(beyond, leased.end());
      if (leased.size() == first) continue;
      left -= std::min(left, leased.size() - first);
      AddCommit(list.get(), p, std::move(metadata));
    }
    if (!leased.empty() && !Commit(list.get())) {
      // Not recorded, so not run: take the leases back and try again shortly.
      for (auto& [p, e] : leased) {
        e->ticket = false;
        --e->deliveries;
        e->slot.Release();
      }
      NoteWaiting(now + kLeaseRetry);
      return;
    }
    std::vector<AttemptPtr>& batch = batch_buf;
    for (auto& [key, p] : partitions) {
      std::erase_if(p.need_lease, [](const Entry* e) { return e->ticket; });
      // Copies due to be sent again, and retries that were just leased, leave the wait list.
      std::vector<Entry*> resend;
      std::erase_if(p.waits, [&](Entry* e) {
        if (e->ticket) return true;
        if (e->copy != Entry::Copy::kNone && e->due <= now) {
          resend.push_back(e);
          return true;
        }
        return false;
      });
      for (Entry* e : resend) {
        if (e->copy == Entry::Copy::kDeadLetter) {
          SendDeadLetter(p, *e);
        } else if (e->copy == Entry::Copy::kRetryTier) {
          SendToTier(p, *e);
        } else {
          SendOutgoing(p, *e);
        }
      }
      if (p.suspects_out == 0 && !p.starved && !p.need_lease.empty() && p.in_flight < kMaxInFlight) {
        lease_wanted = true;
      }
    }
    for (auto& [p, e] : leased) batch.push_back(Start(*p, *e));
    Submit(batch);
  }

  std::vector<std::pair<Partition*, Entry*>> leased_buf;
  std::size_t lease_rotation = 0;
  std::vector<AttemptPtr> batch_buf;

  void NoteWaiting(Clock::time_point due) { next_due = std::min(next_due, due); }

  // Takes a slot for the next run of `e` if its type needs one. Without a free slot the
  // partition is starved: paused, and not leased from until a slot is given back.
  bool TakeSlot(Partition& p, Entry& e) {
    if (e.slot) return true;
    const DeliveryPolicy* policy = PolicyOf(*e.msg);
    if (policy == nullptr || !policy->slots) return true;
    if (policy->slots->TryTake()) {
      e.slot = SlotHold(policy->slots);
      return true;
    }
    p.starved = true;
    UpdatePause(p);
    return false;
  }

  void OnSlotsFreed() {
    for (auto& [key, p] : partitions) {
      if (!p.starved) continue;
      p.starved = false;
      UpdatePause(p);
      lease_wanted = true;
    }
  }

  // Slots outlive the worker (a launcher's jobs keep theirs): stop being woken by them.
  void DetachSlots() {
    for (const auto& pool : slot_pools) pool->SetListener(nullptr);
    std::lock_guard lock(slot_wake->mu);
    slot_wake->queue = nullptr;
  }

  // Hands a leased record to the pool.
  AttemptPtr Start(Partition& p, Entry& e) {
    e.ticket = false;  // this run is the delivery the lease counted
    if (e.suspect && !e.suspect_out) {
      e.suspect_out = true;
      ++p.suspects_out;
    }
    e.state = Entry::State::kRunning;
    ++p.in_flight;
    auto a = std::make_shared<Attempt>(p.revoked.get());
    a->msg = e.msg;
    a->epoch = p.epoch;
    a->offset = e.offset;
    a->entry = &e;
    a->run = ++e.run;
    a->delivery = e.deliveries;
    a->timeout = VisibilityTimeout(*e.msg);
    a->slot = std::move(e.slot);
    return a;
  }

  // Pops the finished prefix: its last offset + 1 is what the next commit will say.
  void AdvanceCommit(Partition& p) {
    const std::int64_t before = p.commit_next;
    while (!p.entries.empty() && p.entries.front().state == Entry::State::kDone) {
      p.commit_next = p.entries.front().offset + 1;
      p.entries.pop_front();
      if (p.scan > 0) --p.scan;
    }
    if (p.commit_next != before) p.moved = turn_start;
    if (p.full && p.entries.size() < config.max_buffered_per_partition / 2 + 1) {
      p.full = false;
      UpdatePause(p);
    }
  }

  void Finish(Partition& p, Entry& e) {
    ReleaseKey(p, e);
    if (e.suspect_out) {
      e.suspect_out = false;
      if (--p.suspects_out == 0) lease_wanted = true;
    }
    e.state = Entry::State::kDone;
    Bury(std::move(e.msg));
  }

  // ---- results ------------------------------------------------------------------------------

  void ProcessResults() {
    std::vector<AttemptPtr>& batch = results_buf;  // swapped with `done`: both keep their capacity
    {
      std::lock_guard lock(done_mu);
      results_ready.store(false, std::memory_order_relaxed);
      if (done.empty()) return;
      batch.swap(done);
    }
    for (auto& a : batch) {
      OnResult(*a);
      Bury(std::move(a->msg));
    }
    batch.clear();
  }
  std::vector<AttemptPtr> results_buf;

  void OnResult(Attempt& a) {
    TypeSeries& series = TypeOf(a);
    if (a.ran) series.duration->Observe(a.seconds);
    if (a.abandoned) return;  // already given up on; counted then
    Partition* p = Live(a.epoch);
    if (p == nullptr) return;  // revoked meanwhile: the new owner runs it again
    --p->in_flight;
    lease_wanted = true;
    Entry* e = static_cast<Entry*>(a.entry);
    if (e->state != Entry::State::kRunning || e->run != a.run) return;
    if (!a.ran) {  // skipped because the partition was being revoked
      e->state = Entry::State::kQueued;
      return;
    }
    DispatchResult& r = a.result;
    switch (r.kind) {
      case DispatchResult::Kind::kAck:
      case DispatchResult::Kind::kSkip:
        Count(r.kind == DispatchResult::Kind::kAck ? handled : skipped);
        ++(r.kind == DispatchResult::Kind::kAck ? series.acked_here : series.skipped_here);
        if (r.outgoing.empty()) {
          Finish(*p, *e);
          AdvanceCommit(*p);
        } else {
          // The key is free once the outgoing messages are queued: they leave in order.
          ReleaseKey(*p, *e);
          SendAll(*p, *e, std::move(r.outgoing));
        }
        return;
      case DispatchResult::Kind::kRetry:
        Failed(*p, *e, reason::kHandlerError, std::move(r.error), r.retry_after, PolicyOf(r.type));
        return;
      case DispatchResult::Kind::kDeadLetter:
        ReleaseKey(*p, *e);
        e->reason = r.reason;
        e->error = std::move(r.error);
        SendDeadLetter(*p, *e);
        return;
    }
  }

  // A delivery failed: wait and run it again in the worker, move it to a retry tier, or, with
  // its deliveries used up, dead-letter it with `final_reason`.
  void Failed(Partition& p, Entry& e, std::string_view final_reason, std::string error,
              std::chrono::milliseconds after, const DeliveryPolicy* policy) {
    if (e.deliveries >= MaxDeliveries(policy)) {
      ReleaseKey(p, e);
      e.reason = final_reason;
      e.error = std::move(error);
      SendDeadLetter(p, e);
      return;
    }
    Count(retried);
    const auto& tiers = policy && policy->retry_tiers ? *policy->retry_tiers : config.retry_tiers;
    const int local = policy && policy->local_attempts ? *policy->local_attempts : config.local_attempts;
    const InboundRecord record = ViewRecord(e.msg.get(), header_buf);
    TypeFor(record.FindHeader(header::kType)).retried->Inc();
    const bool to_tier = !tiers.empty() && (p.tier || e.deliveries >= local);
    (to_tier ? retries_tier : retries_worker)->Inc();
    if (to_tier) {
      // Later attempts wait in a tier topic, so this partition moves on meanwhile.
      const int step = std::max(0, e.deliveries - local);
      const auto delay = tiers[static_cast<std::size_t>(std::min<int>(step, static_cast<int>(tiers.size()) - 1))];
      ReleaseKey(p, e);
      e.tier_topic = RetryTierTopic(config.group, delay);
      e.error = std::move(error);
      e.due = Clock::now() + delay;  // as a wall-clock time in the copy's header
      Log(LogLevel::kWarn, "handler failed, will retry from a tier",
          {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
           {"message_id", MessageId(record)}, {"attempt", e.deliveries}, {"tier", e.tier_topic},
           {"error", e.error}});
      SendToTier(p, e);
      return;
    }
    e.state = Entry::State::kWaiting;
    e.due = Clock::now() + std::max(after, Backoff(e.deliveries, policy));
    p.waits.push_back(&e);
    NoteWaiting(e.due);
    Log(LogLevel::kWarn, "handler failed, will retry",
        {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
         {"message_id", MessageId(record)}, {"attempt", e.deliveries}, {"error", error}});
  }

  // ---- visibility ---------------------------------------------------------------------------

  // Abandons runs past their deadline; exits the process when one is stuck for good.
  void CheckHandlers(Clock::time_point now) {
    ReclaimAll(now);
    for (int i = 0; i < config.handler_threads; ++i) {
      const AttemptPtr a = Current(i);
      if (!a) continue;
      if (a->abandoned) {
        if (now >= a->stuck_at) ExitStuck(*a);
        continue;
      }
      if (a->visibility.deadline() > now) continue;
      Abandon(*a, "visibility timeout of " + std::to_string(a->timeout.count()) +
                      " ms passed before the handler finished; its result is discarded");
    }
  }

  // Gives up on a running delivery. With `decide`, its record is retried or dead-lettered now;
  // without (the partition is being given away), the next owner decides, from the ledger.
  void Abandon(Attempt& a, std::string why, bool decide = true) {
    if (decide) {
      // The handler may have returned meanwhile: then its result stands and is on its way, and
      // the handler thread may be freeing the headers this would read.
      int expected = Attempt::kRunning;
      if (!a.claim.compare_exchange_strong(expected, Attempt::kAbandoned)) return;
    }
    a.visibility.Cancel();
    a.abandoned = true;
    a.stuck_at = a.started + (a.visibility.deadline() - a.started) * kStuckFactor;
    Count(abandoned);
    TypeOf(a).abandoned->Inc();
    Partition* p = Live(a.epoch);
    if (p == nullptr) return;
    --p->in_flight;
    if (!decide) return;
    lease_wanted = true;
    Entry* e = FindEntry(*p, a.offset);
    if (e == nullptr || e->state != Entry::State::kRunning || e->run != a.run) return;
    ++e->run;  // its result, when it comes, is stale
    const InboundRecord record = ViewRecord(e->msg.get(), header_buf);
    Log(LogLevel::kWarn, "delivery abandoned",
        {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
         {"message_id", MessageId(record)}, {"attempt", e->deliveries}, {"error", why}});
    Failed(*p, *e, reason::kVisibilityTimeout, std::move(why), std::chrono::milliseconds(0),
           PolicyOf(*e->msg));
  }

  // A handler ignored its deadline for kStuckFactor visibility timeouts. A thread cannot be
  // killed safely, and leaking it would leak its memory and whatever it holds, so the worker
  // records what it can and exits for its supervisor to restart it. The stuck record's delivery
  // is already counted, so it cannot stall the group forever.
  [[noreturn]] void ExitStuck(const Attempt& a) {
    std::string where = "epoch " + std::to_string(a.epoch);
    if (Partition* p = Live(a.epoch)) where = p->topic + "/" + std::to_string(p->partition);
    Log(LogLevel::kError, "handler stuck past its visibility timeout; committing and exiting",
        {{"partition", where}, {"offset", a.offset}, {"attempt", a.delivery},
         {"visibility_timeout_ms", a.timeout.count()}, {"exit_code", kExitStuckHandler}});
    ProcessResults();
    const auto deadline = Clock::now() + std::min(config.shutdown_grace, std::chrono::milliseconds(5000));
    while (pending_sends > 0 && Clock::now() < deadline) producer->Poll(std::chrono::milliseconds(10));
    for (auto& [key, p] : partitions) AdvanceCommit(p);
    CommitAll(/*clean=*/false);
    std::_Exit(kExitStuckHandler);
  }

  // ---- policies -----------------------------------------------------------------------------

  // The delivery policy of a message type, or nullptr for the worker's settings. Looked up only
  // on the paths that decide about a failure, never per handled record.
  const DeliveryPolicy* PolicyOf(std::string_view type) const {
    const HandlerRegistry::Route* route = type.empty() ? nullptr : handlers.Find(type);
    return route == nullptr ? nullptr : &route->policy;
  }
  const DeliveryPolicy* PolicyOf(const rd_kafka_message_t& m) const {
    auto type = HeaderOf(m, header::kType);
    return type ? PolicyOf(*type) : nullptr;
  }
  int MaxDeliveries(const DeliveryPolicy* policy) const {
    return policy && policy->max_deliveries ? *policy->max_deliveries : config.max_deliveries;
  }
  std::chrono::milliseconds VisibilityTimeout(const rd_kafka_message_t& m) const {
    if (!typed_visibility) return config.visibility_timeout;
    const DeliveryPolicy* policy = PolicyOf(m);
    return policy && policy->visibility_timeout ? *policy->visibility_timeout : config.visibility_timeout;
  }

  // Exponential backoff with "equal jitter": half fixed, half random, so retries of many
  // failing records spread out instead of arriving together.
  std::chrono::milliseconds Backoff(int attempt, const DeliveryPolicy* policy) {
    const auto initial = policy && policy->retry_backoff_initial ? *policy->retry_backoff_initial
                                                                 : config.retry_backoff_initial;
    const auto max = policy && policy->retry_backoff_max ? *policy->retry_backoff_max
                                                         : config.retry_backoff_max;
    const double base = static_cast<double>(initial.count()) * std::pow(2.0, std::max(0, attempt - 1));
    const double capped = std::min(base, static_cast<double>(max.count()));
    std::uniform_real_distribution<double> jitter(0.0, capped / 2);
    return std::chrono::milliseconds(static_cast<std::int64_t>(capped / 2 + jitter(rng)));
  }

  // ---- sends --------------------------------------------------------------------------------

  void SendAll(Partition& p, Entry& e, std::vector<OutgoingRecord> outgoing) {
    e.outgoing = std::move(outgoing);
    e.send_rounds = 0;
    SendOutgoing(p, e);
  }

  // Sends (again) the messages the handler produced. A round that fails is sent again whole,
  // with the same message ids, so consumers can drop what arrived twice.
  void SendOutgoing(Partition& p, Entry& e) {
    e.state = Entry::State::kSending;
    e.copy = Entry::Copy::kOutgoing;
    e.send_failed = false;
    e.pending_sends = static_cast<int>(e.outgoing.size());
    for (const auto& rec : e.outgoing) Send(p, e, rec);
    if (e.pending_sends == 0) SendsFinished(p, e);  // every send was refused at once
  }

  void SendDeadLetter(Partition& p, Entry& e) {
    const InboundRecord record = ViewRecord(e.msg.get(), header_buf);
    Log(LogLevel::kWarn, "dead-lettering record",
        {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
         {"message_id", MessageId(record)}, {"reason", e.reason}, {"error", e.error},
         {"attempts", e.deliveries}});
    SendCopy(p, e, Entry::Copy::kDeadLetter,
             MakeDeadLetter(record, DeadLetterInfo{config.group, e.reason, e.error, e.deliveries, host}));
  }

  void SendToTier(Partition& p, Entry& e) {
    const InboundRecord record = ViewRecord(e.msg.get(), header_buf);
    // Rounded up, so the copy never runs before its delay passed.
    const auto due_ms = std::chrono::ceil<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch() +
                            std::max(Clock::duration(0), e.due - Clock::now()))
                            .count();
    SendCopy(p, e, Entry::Copy::kRetryTier,
             MakeRetry(record, RetryInfo{e.tier_topic, e.deliveries, due_ms, e.error}));
  }

  // Sends a copy of the record (to the dead-letter topic or a retry tier); the record is
  // finished when the broker acknowledged it.
  void SendCopy(Partition& p, Entry& e, Entry::Copy copy, const OutgoingRecord& rec) {
    e.copy = copy;
    e.state = Entry::State::kSending;
    e.send_failed = false;
    e.pending_sends = 1;
    Send(p, e, rec);
    if (e.pending_sends == 0) SendsFinished(p, e);
  }

  // Queues one send for `e`. A refusal is recorded in `e` at once; a delivery report arrives
  // later through OnSent.
  void Send(Partition& p, Entry& e, const OutgoingRecord& rec) {
    Status queued = producer->Produce(
        rec, [this, epoch = p.epoch, offset = e.offset](const Status& s) {
          --pending_sends;
          OnSent(epoch, offset, s);
        });
    if (queued.ok()) {
      ++pending_sends;
    } else {
      e.send_failed = true;
      e.error = queued.error().message();
      --e.pending_sends;
    }
  }

  // A delivery report for a record sent on behalf of the record at `offset`.
  void OnSent(std::uint64_t epoch, std::int64_t offset, const Status& s) {
    Partition* p = Live(epoch);
    // Revoked meanwhile (perhaps assigned again since): the owner redoes the record anyway.
    if (p == nullptr) return;
    Entry* e = FindEntry(*p, offset);
    if (e == nullptr || e->state != Entry::State::kSending) return;
    if (!s.ok()) {
      e->send_failed = true;
      e->error = s.error().message();
    }
    if (--e->pending_sends > 0) return;
    SendsFinished(*p, *e);
    AdvanceCommit(*p);
  }

  // Every send of `e` has its verdict.
  void SendsFinished(Partition& p, Entry& e) {
    if (!e.send_failed) {
      if (e.copy == Entry::Copy::kDeadLetter) {
        Count(dead_lettered);
        TypeFor(HeaderOf(*e.msg, header::kType)).dead_lettered->Inc();
        DeadLetterCounter(e.reason).Inc();
      }
      if (e.copy == Entry::Copy::kRetryTier) Count(delayed);
      e.outgoing.clear();
      Finish(p, e);
      return;
    }
    const DeliveryPolicy* policy = PolicyOf(*e.msg);
    if (e.copy == Entry::Copy::kOutgoing && ++e.send_rounds >= MaxDeliveries(policy)) {
      // The handler did its part; its messages cannot be sent. Never commit past them.
      Log(LogLevel::kError, "outgoing messages could not be sent, dead-lettering the record",
          {{"topic", p.topic}, {"partition", p.partition}, {"offset", e.offset}, {"rounds", e.send_rounds},
           {"error", e.error}});
      e.outgoing.clear();
      e.reason = reason::kPublishError;
      e.error = "the handler succeeded, but its outgoing messages could not be sent in " +
                std::to_string(e.send_rounds) + " rounds: " + e.error;
      SendDeadLetter(p, e);
      return;
    }
    // Sent again when due: a copy, or the handler's messages, without running the handler again.
    Log(LogLevel::kError, e.copy == Entry::Copy::kOutgoing ? "outgoing send failed, will send again"
                                                          : "copy send failed, will send again",
        {{"topic", p.topic}, {"partition", p.partition}, {"offset", e.offset}, {"error", e.error}});
    // At least kMinSendRetry apart: after a permanent produce error librdkafka refuses the topic
    // until its next metadata refresh, about a second, and rounds inside that would be wasted.
    e.state = Entry::State::kWaiting;
    e.due = Clock::now() + std::max<std::chrono::milliseconds>(
                               kMinSendRetry, Backoff(e.copy == Entry::Copy::kOutgoing ? e.send_rounds : e.deliveries, policy));
    p.waits.push_back(&e);
    NoteWaiting(e.due);
  }

  // ---- offsets ------------------------------------------------------------------------------

  // Where the partition's next commit points: after the finished prefix, or at the first
  // record we hold when nothing finished yet; -1 when there is nothing to say.
  static std::int64_t CommitOffset(const Partition& p) {
    if (p.commit_next >= 0) return p.commit_next;
    return p.entries.empty() ? -1 : p.entries.front().offset;
  }

  // The ledger of the partition's counted records past the committed offset: unfinished ones,
  // and finished ones that wait for an earlier record (the next owner runs those again, so their
  // count must carry over too). Clean when asked (revocation, shutdown) or when it is empty.
  // At most kMaxLedgerBytes: counts of the highest offsets are left out first, and
  // `*covered_until` says up to where counts were written.
  std::string LedgerFor(const Partition& p, bool clean, std::int64_t* covered_until = nullptr) {
    // Entries are in offset order, and the earlier owner's counts are for records not fetched
    // yet (a fetched record takes its count over): merge the two sorted sequences.
    std::vector<std::pair<std::int64_t, int>>& counts = ledger_buf;
    counts.clear();
    auto prior = p.prior.begin();
    for (const auto& e : p.entries) {
      if (e.deliveries <= 0) continue;
      for (; prior != p.prior.end() && prior->first < e.offset; ++prior) counts.emplace_back(*prior);
      counts.emplace_back(e.offset, e.deliveries);
    }
    for (; prior != p.prior.end(); ++prior) counts.emplace_back(*prior);
    std::int64_t covered = 0;
    std::string text = DeliveryLedger::EncodeSorted(clean || counts.empty(), counts, CommitOffset(p),
                                                    kMaxLedgerBytes, &covered);
    if (!counts.empty() && covered < counts.back().first && !ledger_full_logged) {
      ledger_full_logged = true;  // once per worker: it repeats on every commit while it lasts
      Log(LogLevel::kWarn, "delivery ledger full: counts past an offset are not recorded",
          {{"topic", p.topic}, {"partition", p.partition}, {"covered_until", covered},
           {"records", counts.size()}});
    }
    if (covered_until != nullptr) *covered_until = covered;
    return text;
  }
  std::vector<std::pair<std::int64_t, int>> ledger_buf;
  bool ledger_full_logged = false;

  static void AddCommit(rd_kafka_topic_partition_list_t* list, const Partition& p,
                        std::string metadata) {
    rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition);
    tp->offset = CommitOffset(p);
    if (!metadata.empty()) {
      // librdkafka frees it with the list.
      tp->metadata = std::malloc(metadata.size());
      if (tp->metadata == nullptr) throw std::bad_alloc();
      std::memcpy(tp->metadata, metadata.data(), metadata.size());
      tp->metadata_size = metadata.size();
    }
  }

  // Commits every partition whose offset or ledger changed since its last accepted commit.
  // Only partitions we own are listed.
  void CommitAll(bool clean) {
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    for (auto& [key, p] : partitions) {
      if (CommitOffset(p) < 0) continue;
      std::string metadata = LedgerFor(p, clean);
      if (CommitOffset(p) > p.committed || metadata != p.committed_metadata) {
        AddCommit(list.get(), p, std::move(metadata));
      }
    }
    Commit(list.get());
  }

  // Commits synchronously: one commit at a time, so a lease can never be overtaken by an older
  // ledger. True when the broker accepted every partition of the list.
  bool Commit(rd_kafka_topic_partition_list_t* list) {
    if (list->cnt == 0) return true;
    const rd_kafka_resp_err_t err = rd_kafka_commit(consumer.get(), list, 0);
    return OnCommitted(err, list);
  }

  bool OnCommitted(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets) {
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == nullptr) return true;
    bool all = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < offsets->cnt; ++i) {
      const auto& tp = offsets->elems[i];
      if (err || tp.err) {
        all = false;
        if (tp.err) err = tp.err;
        continue;
      }
      auto it = partitions.find(TpView(tp.topic, tp.partition));
      if (it != partitions.end()) {
        it->second.committed = std::max(it->second.committed, tp.offset);
        it->second.committed_metadata.assign(static_cast<const char*>(tp.metadata), tp.metadata_size);
      }
    }
    if (all) Count(committed);
    (all ? commits_ok : commits_failed)->Inc();
    if (!all) {
      // Expected during rebalances (REBALANCE_IN_PROGRESS): the next commit covers it. Real
      // Kafka also refuses metadata over offset.metadata.max.bytes, which the ledger stays under.
      Log(LogLevel::kInfo, "offset commit refused", {{"error", rd_kafka_err2str(err)}});
    }
    return all;
  }

  // ---- group membership -----------------------------------------------------------------------

  static void RebalanceTrampoline(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t* parts, void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->OnRebalance(rk, err, parts);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "rebalance handling failed", {{"error", e.what()}});
    } catch (...) {  // it must not leave a C callback, nor terminate the process
      Log(LogLevel::kError, "rebalance handling failed", {{"error", "an exception not derived from std::exception"}});
    }
  }

  void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    FlushCounts();  // received_in may be about to go
    const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      // The previous owners' ledgers: how often each unfinished record was delivered already.
      ReadLedgers(rk, parts);
      for (int i = 0; i < parts->cnt; ++i) {
        const rd_kafka_topic_partition_t& tp = parts->elems[i];
        Partition p(&pool);
        p.topic = tp.topic;
        p.partition = tp.partition;
        p.tier = tier_topics.contains(p.topic);
        p.epoch = next_epoch++;
        p.moved = Clock::now();
        p.received = &received_family->With({config.group, p.topic});
        p.lag = &lag_family->With({config.group, p.topic, std::to_string(p.partition)});
        if (tp.err == RD_KAFKA_RESP_ERR_NO_ERROR && tp.offset >= 0) p.start = tp.offset;
        if (tp.err == RD_KAFKA_RESP_ERR_NO_ERROR && tp.metadata_size > 0 && tp.offset >= 0) {
          const std::string_view text(static_cast<const char*>(tp.metadata), tp.metadata_size);
          auto ledger = DeliveryLedger::Decode(text, tp.offset);
          if (ledger.ok()) {
            p.prior = std::move(ledger->deliveries);
            p.dirty_takeover = !ledger->clean;
            p.committed = tp.offset;
            p.committed_metadata = std::string(text);
            if (!p.prior.empty()) {
              Log(p.dirty_takeover ? LogLevel::kWarn : LogLevel::kInfo,
                  p.dirty_takeover ? "taking over after an unclean stop: delivered records run one at a time"
                                   : "taking over delivery counts",
                  {{"topic", p.topic}, {"partition", p.partition}, {"records", p.prior.size()}});
            }
          } else {
            // Loud, not fatal: the counts start over, so a poison record gets more deliveries.
            Log(LogLevel::kError, "unreadable delivery ledger, counts start over",
                {{"topic", p.topic}, {"partition", p.partition}, {"error", ledger.error().message()}});
          }
        }
        if (auto old = partitions.find(TpView(p.topic, p.partition)); old != partitions.end()) {
          live.erase(old->second.epoch);
          if (old->second.paused) paused_count.fetch_sub(1, std::memory_order_relaxed);
        }
        revoked_flags.push_back(p.revoked);
        auto [it, inserted] = partitions.insert_or_assign(TpKey(p.topic, p.partition), std::move(p));
        live[it->second.epoch] = &it->second;
      }
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, parts)) {
          Log(LogLevel::kError, "incremental assign failed", {{"error", rd_kafka_error_string(e)}});
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(rk, parts);
      }
      // librdkafka keeps a partition's application pause across a revoke and a new assignment
      // (2.0.2 resets only its own internal pause), while the new Partition starts unpaused: a
      // partition paused before a rebalance that hands it back would otherwise never be fetched
      // again. Resume them all, so both sides start from "fetching".
      if (rd_kafka_resp_err_t e = rd_kafka_resume_partitions(rk, parts)) {
        Log(LogLevel::kError, "cannot resume assigned partitions", {{"error", rd_kafka_err2str(e)}});
      }
      Log(LogLevel::kInfo, "partitions assigned", {{"count", parts->cnt}, {"group", config.group}});
      rebalances_assigned->Inc();
      joined.store(true, std::memory_order_relaxed);
      next_lag_update = Clock::time_point{};  // the new partitions' lag at the next turn
      std::vector<TopicPartition> given;
      for (int i = 0; i < parts->cnt; ++i) {
        TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
        if (std::find(hooked.begin(), hooked.end(), tp) == hooked.end()) {
          hooked.push_back(tp);
          given.push_back(std::move(tp));
        }
      }
      CallHook(config.on_assigned, given, "on_assigned");
    } else {
      const bool lost = rd_kafka_assignment_lost(rk);
      FinishBeforeRevoke(parts, /*commit=*/!lost);
      for (int i = 0; i < parts->cnt; ++i) {
        auto it = partitions.find(TpView(parts->elems[i].topic, parts->elems[i].partition));
        if (it != partitions.end()) {
          live.erase(it->second.epoch);
          if (it->second.paused) paused_count.fetch_sub(1, std::memory_order_relaxed);
          partitions.erase(it);
        }
        // Not ours any more: its lag is the new owner's to report.
        lag_family->Remove({config.group, parts->elems[i].topic, std::to_string(parts->elems[i].partition)});
      }
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, parts)) {
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(rk, nullptr);
      }
      Log(LogLevel::kInfo, lost ? "partitions lost" : "partitions revoked",
          {{"count", parts->cnt}, {"group", config.group}});
      (lost ? rebalances_lost : rebalances_revoked)->Inc();
      // Lost: the member is out of the group (its session ended) until it joins again.
      if (lost) joined.store(false, std::memory_order_relaxed);
      std::vector<TopicPartition> taken;
      for (int i = 0; i < parts->cnt; ++i) {
        TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
        if (auto it = std::find(hooked.begin(), hooked.end(), tp); it != hooked.end()) {
          hooked.erase(it);
          taken.push_back(std::move(tp));
        }
      }
      CallHook(config.on_revoked, taken, "on_revoked");
    }
    last = nullptr;
    last_rkt = nullptr;
    assigned = static_cast<std::uint32_t>(partitions.size());
  }

  static void CallHook(const std::function<void(const std::vector<TopicPartition>&)>& hook,
                       const std::vector<TopicPartition>& parts, std::string_view name) {
    if (!hook || parts.empty()) return;
    try {
      hook(parts);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "rebalance hook failed", {{"hook", name}, {"error", e.what()}});
    } catch (...) {  // user code: a thrown int must not terminate the worker either
      Log(LogLevel::kError, "rebalance hook failed",
          {{"hook", name}, {"error", "an exception not derived from std::exception"}});
    }
  }

  // Reads committed offsets and their metadata (the ledgers) into `parts`. On failure the
  // partitions start without counts, which is logged.
  void ReadLedgers(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts) {
    const rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, 10000);
    if (err) {
      Log(LogLevel::kError, "cannot read committed offsets, delivery counts start over",
          {{"error", rd_kafka_err2str(err)}});
    }
  }

  std::vector<Partition*> Find(const rd_kafka_topic_partition_list_t* parts) {
    std::vector<Partition*> out;
    for (int i = 0; i < parts->cnt; ++i) {
      auto it = partitions.find(TpView(parts->elems[i].topic, parts->elems[i].partition));
      if (it != partitions.end()) out.push_back(&it->second);
    }
    return out;
  }

  // Stops starting runs of `ps`, and waits up to `grace` for the running ones and then for the
  // outgoing sends, serving results meanwhile. Runs still going after that are abandoned.
  void Drain(const std::vector<Partition*>& ps, std::chrono::milliseconds grace) {
    for (Partition* p : ps) p->revoked->store(true, std::memory_order_release);
    const auto deadline = Clock::now() + grace;
    auto busy = [&](bool sends) {
      for (Partition* p : ps) {
        if (!sends && p->in_flight > 0) return true;
        if (sends) {
          for (const auto& e : p->entries) {
            if (e.state == Entry::State::kSending) return true;
          }
        }
      }
      return false;
    };
    while (busy(false) && Clock::now() < deadline) {
      {
        std::unique_lock lock(done_mu);
        done_cv.wait_for(lock, std::chrono::milliseconds(10), [&] { return !done.empty(); });
      }
      ProcessResults();
      if (pending_sends > 0) producer->Poll(std::chrono::milliseconds(0));
      // Runs queued behind a slow handler in its chunk: let another thread skip them.
      ReclaimAll(Clock::now());
    }
    for (int i = 0; i < config.handler_threads; ++i) {
      const AttemptPtr a = Current(i);
      if (a && !a->abandoned && std::find(ps.begin(), ps.end(), Live(a->epoch)) != ps.end()) {
        Abandon(*a, "the worker gave the partition up while the handler still ran", /*decide=*/false);
      }
    }
    while (busy(true) && Clock::now() < deadline) producer->Poll(std::chrono::milliseconds(10));
  }

  // Before giving partitions away: let their running handlers and outgoing sends finish
  // (bounded by the grace period), then commit what is finished with a clean ledger (the counts
  // of what is not finished go with it), so the next owner starts after it. Lost partitions are
  // not committed: another member may own them already.
  void FinishBeforeRevoke(const rd_kafka_topic_partition_list_t* parts, bool commit) {
    const std::vector<Partition*> ps = Find(parts);
    Drain(ps, commit ? config.revoke_grace : std::chrono::milliseconds(0));
    if (!commit) return;
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(parts->cnt));
    for (Partition* p : ps) {
      AdvanceCommit(*p);
      if (CommitOffset(*p) < 0) continue;
      std::string metadata = LedgerFor(*p, /*clean=*/true);
      if (CommitOffset(*p) > p->committed || metadata != p->committed_metadata) {
        AddCommit(list.get(), *p, std::move(metadata));
      }
    }
    Commit(list.get());
  }

  // Pauses or resumes fetching of `p` so that librdkafka's state matches the reasons the
  // partition has (full, head_wait, starved): the one place that tells librdkafka.
  void UpdatePause(Partition& p) {
    const bool pause = p.full || p.head_wait || p.starved;
    if (pause == p.paused) return;
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
    const rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(consumer.get(), list.get())
                                          : rd_kafka_resume_partitions(consumer.get(), list.get());
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      p.paused = pause;
      paused_count.fetch_add(pause ? 1 : -1, std::memory_order_relaxed);
    } else {
      Log(LogLevel::kError, pause ? "cannot pause partition" : "cannot resume partition",
          {{"topic", p.topic}, {"partition", p.partition}, {"error", rd_kafka_err2str(err)}});
    }
  }

  // Reports partitions that have work and have not moved for config.stall_warning while nothing
  // of ours holds them: no run in flight, no retry or tier wait, no slot wait. Such a partition
  // is waiting on something the worker does not know of (a pause librdkafka kept, a leader
  // that does not answer), so it is made loud rather than left silent. "Work" is a buffered
  // record, or the broker's end of the partition (as librdkafka last heard it) beyond what was
  // read.
  void CheckStalls(Clock::time_point now) {
    next_stall_check = now + std::clamp<Clock::duration>(config.stall_warning / 4, std::chrono::milliseconds(100),
                                                         std::chrono::seconds(5));
    std::uint32_t count = 0;
    for (auto& [key, p] : partitions) {
      UpdatePause(p);  // again, if librdkafka refused the last pause or resume
      if (config.stall_warning.count() == 0) continue;
      std::int64_t low = -1, high = -1;
      rd_kafka_get_watermark_offsets(consumer.get(), p.topic.c_str(), p.partition, &low, &high);
      const std::int64_t read_to = p.next_offset >= 0 ? p.next_offset : p.start >= 0 ? p.start : low;
      const bool work = !p.entries.empty() || (high >= 0 && read_to >= 0 && high > read_to);
      const bool held = p.in_flight > 0 || p.head_wait || p.starved || !p.waits.empty();
      const bool stalled = work && !held && now - p.moved >= config.stall_warning;
      if (stalled && !p.stall_reported) {
        Log(LogLevel::kWarn, "partition has work but has not moved",
            {{"topic", p.topic},
             {"partition", p.partition},
             {"group", config.group},
             {"seconds", std::chrono::duration_cast<std::chrono::seconds>(now - p.moved).count()},
             {"buffered", p.entries.size()},
             {"read_to", read_to},
             {"high_watermark", high},
             {"paused", p.paused}});
      } else if (!stalled && p.stall_reported) {
        Log(LogLevel::kInfo, "partition moves again", {{"topic", p.topic}, {"partition", p.partition}});
      }
      p.stall_reported = stalled;
      count += stalled ? 1 : 0;
    }
    stalled.store(count, std::memory_order_relaxed);
  }

  // ---- shutdown -----------------------------------------------------------------------------

  // Unsubscribes and serves the resulting revoke here, through the usual rebalance callback,
  // so that closing the consumer has nothing left to revoke. A revoke served from inside
  // rd_kafka_consumer_close can hang for good in rd_kafka_assign (caught in a test: the poll
  // thread blocked there with every other thread idle; librdkafka issue #4884 describes the same
  // hang). Bounded: after 10 s the close does the rest, as it did before.
  void GiveUpAssignment() {
    if (partitions.empty()) return;
    if (rd_kafka_resp_err_t err = rd_kafka_unsubscribe(consumer.get())) {
      Log(LogLevel::kWarn, "unsubscribe failed", {{"error", rd_kafka_err2str(err)}});
      return;
    }
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!partitions.empty() && Clock::now() < deadline) {
      // Records still arriving are not handled: the next owner reads them from the commit.
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.get(), 100)) rd_kafka_message_destroy(m);
    }
    if (!partitions.empty()) {
      Log(LogLevel::kWarn, "partitions not revoked 10 s after unsubscribing; closing anyway",
          {{"count", partitions.size()}, {"group", config.group}});
    }
  }

  void Shutdown() {
    board->SetShuttingDown();  // not ready from now on: the process is going away
    Log(LogLevel::kInfo, "worker stopping", {{"group", config.group}});
    DetachSlots();
    std::vector<Partition*> all;
    for (auto& [key, p] : partitions) all.push_back(&p);
    Drain(all, config.shutdown_grace);
    for (auto& [key, p] : partitions) AdvanceCommit(p);
    // Commit while still a stable member: during the leave rebalance the broker may refuse it.
    CommitAll(/*clean=*/true);
    GiveUpAssignment();
    if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer.get())) {
      Log(LogLevel::kWarn, "consumer close failed", {{"error", rd_kafka_err2str(err)}});
    }
    // Closing revokes through the rebalance callback; whatever it did not report, report now.
    CallHook(config.on_revoked, hooked, "on_revoked");
    hooked.clear();
    // Handlers abandoned above may still run: wait for them, but not for a stuck one.
    {
      std::lock_guard lock(pool_mu);
      pool_stop = true;
    }
    pool_cv.notify_all();
    for (;;) {
      bool running = false;
      for (int i = 0; i < config.handler_threads; ++i) {
        const AttemptPtr a = Current(i);
        if (!a) continue;
        running = true;
        if (!a->abandoned) Abandon(*a, "the worker is stopping", /*decide=*/false);
        if (Clock::now() >= a->stuck_at) ExitStuck(*a);
      }
      if (!running) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    StopPool();
    FlushCounts();
    Log(LogLevel::kInfo, "worker stopped",
        {{"group", config.group}, {"handled", handled.load()}, {"dead_lettered", dead_lettered.load()}});
  }
};

Worker::Worker(WorkerConfig config, const HandlerRegistry& handlers) {
  if (Status s = Validate(config); !s.ok()) throw std::invalid_argument(s.error().message());
  if (config.host.empty()) config.host = detail::HostName();
  impl_ = std::make_unique<Impl>(std::move(config), handlers);
  impl_->host = impl_->config.host;
  impl_->metrics = impl_->config.metrics ? impl_->config.metrics : std::make_shared<metrics::Registry>();
  impl_->board = impl_->config.health ? impl_->config.health : std::make_shared<health::Board>();
  impl_->Open();
  impl_->SetUpOperations();
  if (impl_->config.http_port != 0) {
    ops::ServerConfig sc;
    sc.bind_address = impl_->config.http_bind_address;
    sc.port = std::max(0, impl_->config.http_port);
    sc.origin = "--http-port (KBUS_HTTP_PORT)";
    impl_->server = std::make_unique<ops::Server>(sc, *impl_->metrics, *impl_->board);
    Log(LogLevel::kInfo, "serving /healthz, /readyz and /metrics",
        {{"port", impl_->server->port()}, {"group", impl_->config.group}});
  }
}

metrics::Registry& Worker::metrics() { return *impl_->metrics; }
health::Board& Worker::health() { return *impl_->board; }
int Worker::http_port() const { return impl_->server ? impl_->server->port() : 0; }

Worker::~Worker() = default;

void Worker::Run() { impl_->Run(); }

void Worker::Stop() noexcept { impl_->stop.store(true, std::memory_order_relaxed); }

WorkerStats Worker::Stats() const {
  WorkerStats s;
  s.handled = impl_->handled.load();
  s.skipped = impl_->skipped.load();
  s.retried = impl_->retried.load();
  s.dead_lettered = impl_->dead_lettered.load();
  s.committed = impl_->committed.load();
  s.abandoned = impl_->abandoned.load();
  s.delayed = impl_->delayed.load();
  s.assigned_partitions = impl_->assigned.load();
  s.stalled_partitions = impl_->stalled.load();
  s.paused_partitions = static_cast<std::uint32_t>(std::max(0, impl_->paused_count.load()));
  return s;
}

}  // namespace kbus::kafka
