#include "kbus/kafka/worker.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kbus/dispatcher.hpp"
#include "kbus/envelope.hpp"
#include "kbus/log.hpp"
#include "kbus/ops/server.hpp"
#include "rd_handles.hpp"
#include "worker/consumer.hpp"
#include "worker/delivery_policy.hpp"
#include "worker/group_watch.hpp"
#include "worker/handler_pool.hpp"
#include "worker/lanes.hpp"
#include "worker/offset_committer.hpp"
#include "worker/outbox.hpp"
#include "worker/partition_book.hpp"
#include "worker/record_view.hpp"
#include "worker/results.hpp"
#include "worker/series.hpp"

// The worker's loop, its group membership and its shutdown. Its parts (docs/architecture.md):
// worker/partition_book (what may run, what may be committed), worker/handler_pool (the
// threads), worker/delivery_policy (backoff, tiers), worker/outbox (sends and their reports),
// worker/offset_committer (leases and commits), worker/group_watch (readiness), worker/series
// (metrics).

namespace kbus::kafka {

using namespace worker;  // NOLINT: this file is the worker
using detail::RdMessagePtr;
using detail::RdPartitionListPtr;

struct Worker::Impl {
  static constexpr int kStuckFactor = Results::kStuckFactor;
  // Liveness: the poll loop has turned within max(kMinPollSilence, 3 session timeouts).
  static constexpr std::chrono::seconds kMinPollSilence{30};
  static constexpr std::chrono::seconds kLagInterval{1};
  // The longest a lease waits for the previous one, and a commit round trip that says the
  // broker is busy (LeaseSpacing).
  static constexpr std::chrono::milliseconds kMaxLeaseSpacing{5};
  static constexpr std::chrono::milliseconds kBusyBroker{1};

  Impl(WorkerConfig c, const HandlerRegistry& h)
      : config(std::move(c)),
        handlers(h),
        dispatcher(h),
        metrics(config.metrics ? config.metrics : std::make_shared<metrics::Registry>()),
        board(config.health ? config.health : std::make_shared<health::Board>()),
        consumer(config, counters),
        series(*metrics, config.group, h),
        policies(config, h),
        lanes(h),
        book(config.ordering, config.max_buffered_per_partition),
        group(config.group, config.client.brokers),
        committer(book, series, counters, [this](std::vector<EntryRef>& leased) { RunLeased(leased); }),
        outbox(config, book, policies, series, counters, turn_start),
        results(book, outbox, policies, series, counters, turn_start),
        pool(config.handler_threads, lanes.weights(), dispatcher, series,
             [this] { rd_kafka_queue_yield(consumer.queue()); }),
        max_deliveries([this](const rd_kafka_message_t& m) { return policies.MaxDeliveries(policies.Of(m)); }) {}

  ~Impl() {
    policies.UnwatchSlots();
    pool.Stop();
  }

  WorkerConfig config;
  const HandlerRegistry& handlers;
  Dispatcher dispatcher;
  std::shared_ptr<metrics::Registry> metrics;
  std::shared_ptr<health::Board> board;
  Counters counters;
  // Before everything that holds its records or uses its handle: destroyed after them, since
  // destroying the handle waits for every record of it to be released.
  Consumer consumer;
  Series series;
  DeliveryPolicies policies;
  LaneTable lanes;
  PartitionBook book;
  GroupWatch group;
  Clock::time_point turn_start{};  // when this turn's poll returned: one clock read a turn
  OffsetCommitter committer;
  Outbox outbox;
  Results results;
  HandlerPool pool;  // after what its threads use
  const PartitionBook::MaxDeliveries max_deliveries;
  std::atomic<bool> stop{false};
  Clock::time_point next_commit{};
  Clock::time_point next_stall_check{};
  Clock::time_point next_lag_update{};
  Clock::time_point next_lease_at{};  // LeaseSpacing
  std::vector<EntryRef> dead_buf, resend_buf;
  std::vector<AttemptPtr> batch_buf, results_buf;
  std::vector<std::size_t> queued_buf;  // the pool's queued runs per lane, for a lease
  std::uint64_t arrived_lanes = 0;      // lanes (bits) that received records this turn
  // What the probe reads, written by the poll thread.
  std::atomic<Clock::rep> last_turn{Clock::now().time_since_epoch().count()};
  std::atomic<bool> run_ended{false};

  // Operations: the port serving them. Last, so that the server stops first and nothing serves
  // a half-destroyed worker; the collector and the probe go before it.
  std::unique_ptr<ops::Server> server;
  metrics::CollectorHandle collector;
  health::ProbeHandle probe;

  // ---- set-up -------------------------------------------------------------------------------

  void Open() {
    auto props = ConsumerProperties(config);
    // The group's state for readiness (GroupWatch): a short text once a second, served on the
    // poll thread. A user who turns statistics off (-X statistics.interval.ms=0) gets readiness
    // from the rebalances alone.
    props["statistics.interval.ms"] = "1000";
    for (const auto& [k, v] : config.client.properties) props[k] = v;
    const bool stats = props["statistics.interval.ms"] != "0";
    group.SetStatsEnabled(stats);
    std::vector<std::string> topics = handlers.Topics();
    for (const auto& t : config.extra_topics) topics.push_back(t);
    for (const auto& t : policies.tier_topics()) topics.push_back(t);
    std::sort(topics.begin(), topics.end());
    topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
    consumer.Open(props, {this, &Impl::RebalanceTrampoline, stats ? &Impl::StatsTrampoline : nullptr, &Impl::ErrorTrampoline},
                  topics);
    committer.Attach(consumer.get(), consumer.queue());
    policies.WatchSlots(consumer.queue());
    ProducerConfig pc;
    pc.client = config.client;
    pc.client.client_id = config.client.client_id + "-out";
    pc.background_poll = false;  // delivery reports are served by Run()'s loop, on this thread
    pc.reports_ready = [queue = consumer.queue()] { rd_kafka_queue_yield(queue); };  // ... at once
    // By default a message waits at most 1 ms for others to share its request: at low load the
    // producer's 5 ms was most of a hop's latency (WorkerConfig::producer_linger).
    pc.linger = config.producer_linger.value_or(std::chrono::milliseconds(1));
    outbox.Open(pc);
    pool.Start();
    std::string joined;
    for (const auto& t : topics) joined += (joined.empty() ? "" : ",") + t;
    Log(LogLevel::kInfo, "worker started",
        {{"group", config.group}, {"topics", joined}, {"brokers", config.client.brokers},
         {"handler_threads", config.handler_threads}, {"ordering", OrderingName(config.ordering)}});
  }

  // The gauges that mirror state, and the worker's probe on the health board.
  void SetUpOperations() {
    collector = metrics->OnCollect([this] {
      series.runs_gauge->Set(static_cast<double>(pool.Running()));
      series.assigned_gauge->Set(counters.assigned.load(std::memory_order_relaxed));
      series.paused_gauge->Set(std::max(0, counters.paused.load(std::memory_order_relaxed)));
      series.stalled_gauge->Set(counters.stalled.load(std::memory_order_relaxed));
    });
    probe = board->Add("worker " + config.group, [this] { return Probe(); });
  }

  // ---- operations (docs/operations.md) ------------------------------------------------------

  // The worker's health, on the thread asking.
  health::Report Probe() const {
    const auto now = Clock::now();
    GroupWatch::Facts f;
    f.silence = now - Clock::time_point(Clock::duration(last_turn.load(std::memory_order_relaxed)));
    f.silence_limit = std::max<Clock::duration>(kMinPollSilence, 3 * config.session_timeout);
    f.stuck = pool.StuckFor(now, kStuckFactor) > Clock::duration::zero();
    f.stuck_factor = kStuckFactor;
    f.stopping = stop.load(std::memory_order_relaxed) || run_ended.load(std::memory_order_relaxed);
    f.producer_warm = outbox.warm();
    f.running = pool.Running();
    f.assigned = counters.assigned.load(std::memory_order_relaxed);
    f.paused = static_cast<std::uint32_t>(std::max(0, counters.paused.load(std::memory_order_relaxed)));
    f.stalled = counters.stalled.load(std::memory_order_relaxed);
    return group.Report(f);
  }

  static void ErrorTrampoline(rd_kafka_t*, int err, const char* reason, void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->group.OnError(static_cast<rd_kafka_resp_err_t>(err), reason);
    } catch (...) {  // nothing may leave a C callback
    }
  }

  static int StatsTrampoline(rd_kafka_t*, char* json, size_t json_len, void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->group.OnStats(std::string_view(json, json_len));
    } catch (...) {  // nothing may leave a C callback; a missed statistics round is harmless
    }
    return 0;  // librdkafka frees the text
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
        pool.SetPollIdle(true);
        if (pool.ResultsReady()) timeout = 0;  // posted before the idle flag was seen
      }
      rd_kafka_message_t* first = rd_kafka_consumer_poll(consumer.get(), timeout);
      pool.SetPollIdle(false);
      turn_start = Clock::now();
      last_turn.store(turn_start.time_since_epoch().count(), std::memory_order_relaxed);
      arrived_lanes = 0;
      for (rd_kafka_message_t* m = first; m != nullptr; m = rd_kafka_consumer_poll(consumer.get(), 0)) {
        OnMessage(RdMessagePtr(m));
        if (++taken >= PartitionBook::kMaxWave) break;
      }
      committer.Poll(std::chrono::milliseconds(0));  // a lease answered: its records run
      ProcessResults();
      pool.Bury(book.released());
      if (taken == 0) pool.FlushGraves();
      if (policies.SlotsFreed()) book.SlotsFreed();
      if (outbox.pending() > 0) outbox.Poll(std::chrono::milliseconds(0));
      const auto now = Clock::now();
      CheckHandlers(now);
      // A lane is leased when it has new work and runs low in the pool, so that a lane whose
      // runs wait in the pool (a bulk backlog) neither holds another back nor is leased again.
      const std::uint64_t hungry = HungryLanes();
      if (now >= book.next_due) {
        LeaseAndPump(now, ~std::uint64_t{0});
      } else if (((arrived_lanes | (book.lease_wanted ? book.wanted_lanes : 0)) & hungry) != 0) {
        LeaseAndPump(now, hungry);
      }
      // One commit at a time: while a lease is in flight the periodic one waits a turn.
      if (now >= next_commit && (committer.CommitAllAsync() || !committer.busy())) {
        next_commit = now + config.commit_interval;
      }
      ApplyPauses();
      if (now >= next_stall_check) {
        next_stall_check = now + std::clamp<Clock::duration>(config.stall_warning / 4, std::chrono::milliseconds(100),
                                                             std::chrono::seconds(5));
        consumer.CheckStalls(book, now);
      }
      if (now >= next_lag_update) {
        next_lag_update = now + kLagInterval;
        consumer.UpdateLag(book);
      }
      series.Flush();
    }
    Shutdown();
    run_ended.store(true, std::memory_order_relaxed);
  }

  // Lease rounds cost a commit each, so records are leased in batches: when the pool's queue
  // of a lane runs low, not whenever one record could run. The lanes that do, as bits.
  std::uint64_t HungryLanes() const {
    const std::size_t low_water = 1024 + static_cast<std::size_t>(config.handler_threads) * HandlerPool::kMaxChunk;
    std::uint64_t hungry = 0;
    for (std::size_t lane = 0; lane < pool.lanes(); ++lane) {
      if (pool.queued(lane) < low_water) hungry |= PartitionBook::LaneBit(lane);
    }
    return hungry;
  }

  int PollTimeoutMs() const {
    // Results, delivery reports and commit answers wake the poll (rd_kafka_queue_yield).
    // Otherwise a short wait keeps Stop() and the visibility checks responsive; wake earlier for
    // the earliest due retry.
    auto wait = std::chrono::milliseconds(100);
    // While a commit is in flight, its answer wakes the poll: the next lease waits for it.
    if (committer.busy()) return static_cast<int>(wait.count());
    const auto now = Clock::now();
    auto due = book.next_due;
    if (book.lease_wanted && (book.wanted_lanes & HungryLanes()) != 0) due = now;
    if (due != Clock::time_point::max()) {
      due = std::max(due, next_lease_at);
      wait = std::min(wait, std::max(std::chrono::ceil<std::chrono::milliseconds>(due - now), std::chrono::milliseconds(0)));
    }
    return static_cast<int>(wait.count());
  }

  void OnMessage(RdMessagePtr m) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      group.NoteError(rd_kafka_message_errstr(m.get()));
      Log(LogLevel::kWarn, "consumer error",
          {{"error", rd_kafka_message_errstr(m.get())}, {"topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""}});
      return;
    }
    Partition* p = book.Find(*m);
    if (p == nullptr) return;  // no longer ours: the new owner reads it from the committed offset
    series.CountReceived(p->received);
    arrived_lanes |= PartitionBook::LaneBit(p->lane);
    book.Receive(*p, MessagePtr(m.release(), &rd_kafka_message_destroy), turn_start, max_deliveries);
    if (p->pause_queued) ApplyPauses();  // full: stop fetching before the rest of the wave
  }

  // Leasing at once keeps a record's wait short, but each lease is a commit the broker writes:
  // a stream of leases of a record or two each saturated a broker sharing 2 cores with the
  // worker (kbus-bench --latency, 2,000 msg/s on real Kafka: the broker's JVM at 100 % CPU and
  // latency growing without bound). A broker that answers a commit within a millisecond is not
  // loaded, and leases go at once (at 500 msg/s spacing them cost 2 ms at p50); one that takes
  // longer gets the next lease no sooner than four of its round trips later, at most
  // kMaxLeaseSpacing, so that each lease carries more records.
  Clock::duration LeaseSpacing() const {
    const Clock::duration rtt = committer.last_round_trip();
    if (rtt < kBusyBroker) return Clock::duration::zero();
    return std::min<Clock::duration>(kMaxLeaseSpacing, 4 * rtt);
  }

  // Counts the next deliveries of every partition of `lanes` (bits) in one lease commit
  // (PartitionBook::Choose picks them); they run once the broker answered (RunLeased). One
  // commit at a time.
  void LeaseAndPump(Clock::time_point now, std::uint64_t lanes_to_lease) {
    if (committer.busy()) return;  // its answer starts the next round
    if (now < next_lease_at) return;  // PollTimeoutMs wakes the loop then
    dead_buf.clear();
    const bool commit_first = book.Scan(now, dead_buf);
    for (auto& [p, e] : dead_buf) outbox.SendDeadLetter(*p, *e);
    // What finished before a suspect runs is committed first: a crash in the suspect must not
    // run it again. The suspect is leased once that commit is answered.
    if (commit_first && committer.CommitAllAsync()) return;
    queued_buf.resize(pool.lanes());
    for (std::size_t lane = 0; lane < queued_buf.size(); ++lane) queued_buf[lane] = pool.queued(lane);
    committer.Lease(now, queued_buf, lanes_to_lease, [this](Partition&, Entry& e) {
      // Only when some type takes slots: reading a record's type here would parse its headers
      // on this thread, and they are best parsed (and freed) by the handler thread.
      if (policies.slot_pools().empty()) return true;
      const DeliveryPolicy* policy = policies.Of(*e.msg);
      if (policy == nullptr || !policy->slots) return true;
      if (!policy->slots->TryTake()) return false;
      e.slot = SlotHold(policy->slots);
      return true;
    });
    if (committer.busy()) next_lease_at = now + LeaseSpacing();
    if (!committer.busy()) {  // nothing leased: resend what is due
      std::vector<EntryRef> none;
      RunLeased(none);
    }
  }

  // The broker recorded the lease of `leased` (or nothing was leased): they run now, and copies
  // due to be sent again are sent.
  void RunLeased(std::vector<EntryRef>& leased) {
    resend_buf.clear();
    book.Leased(turn_start, resend_buf);
    for (auto& [p, e] : resend_buf) outbox.Resend(*p, *e);
    for (auto& [p, e] : leased) batch_buf.push_back(Start(*p, *e));
    leased.clear();
    pool.Submit(batch_buf);
  }

  // Hands a leased record to the pool.
  AttemptPtr Start(Partition& p, Entry& e) {
    book.Begin(p, e);
    auto a = std::make_shared<Attempt>(p.revoked.get());
    a->msg = e.msg;
    a->epoch = p.epoch;
    a->offset = e.offset;
    a->lane = p.lane;
    a->entry = &e;
    a->run = e.run;
    a->delivery = e.deliveries;
    a->timeout = policies.VisibilityTimeout(*e.msg);
    a->slot = std::move(e.slot);
    return a;
  }

  // ---- results ------------------------------------------------------------------------------

  void ProcessResults() {
    if (!pool.TakeResults(results_buf)) return;
    for (auto& a : results_buf) {
      results.Serve(*a);
      pool.Bury(std::move(a->msg));
    }
    results_buf.clear();
  }

  // ---- visibility ---------------------------------------------------------------------------

  void ReclaimSlow(Clock::time_point now) {
    pool.ReclaimSlow(now, results_buf);
    for (auto& a : results_buf) results.Serve(*a);
    results_buf.clear();
  }

  // Abandons runs past their deadline; exits the process when one is stuck for good.
  void CheckHandlers(Clock::time_point now) {
    ReclaimSlow(now);
    for (int i = 0; i < pool.threads(); ++i) {
      const AttemptPtr a = pool.Current(i);
      if (!a) continue;
      if (a->abandoned) {
        if (now >= a->stuck_at) ExitStuck(*a);
        continue;
      }
      if (a->visibility.deadline() > now) continue;
      results.Abandon(*a, "visibility timeout of " + std::to_string(a->timeout.count()) +
                      " ms passed before the handler finished; its result is discarded");
    }
  }

  // A handler ignored its deadline for kStuckFactor visibility timeouts. A thread cannot be
  // killed safely, and leaking it would leak its memory and whatever it holds, so the worker
  // records what it can and exits for its supervisor to restart it. The stuck record's delivery
  // is already counted, so it cannot stall the group forever.
  [[noreturn]] void ExitStuck(const Attempt& a) {
    std::string where = "epoch " + std::to_string(a.epoch);
    if (Partition* p = book.Live(a.epoch)) where = p->topic + "/" + std::to_string(p->partition);
    Log(LogLevel::kError, "handler stuck past its visibility timeout; committing and exiting",
        {{"partition", where}, {"offset", a.offset}, {"attempt", a.delivery},
         {"visibility_timeout_ms", a.timeout.count()}, {"exit_code", kExitStuckHandler}});
    ProcessResults();
    const auto deadline = Clock::now() + std::min(config.shutdown_grace, std::chrono::milliseconds(5000));
    while (outbox.pending() > 0 && Clock::now() < deadline) outbox.Poll(std::chrono::milliseconds(10));
    book.ForEach([&](Partition& p) { book.AdvanceCommit(p, Clock::now()); });
    committer.CommitAllNow(/*clean=*/false);
    std::_Exit(kExitStuckHandler);
  }

  // ---- group membership -----------------------------------------------------------------------

  static void RebalanceTrampoline(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                                  void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->OnRebalance(rk, err, parts);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "rebalance handling failed", {{"error", e.what()}});
    } catch (...) {  // it must not leave a C callback, nor terminate the process
      Log(LogLevel::kError, "rebalance handling failed", {{"error", "an exception not derived from std::exception"}});
    }
  }

  void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    series.Flush();
    const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      Assigned(rk, parts, cooperative);
    } else {
      Revoked(rk, parts, cooperative);
    }
    counters.assigned = static_cast<std::uint32_t>(book.size());
  }

  void Assigned(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative) {
    // The previous owners' ledgers: how often each unfinished record was delivered already.
    committer.ReadCommitted(rk, parts);
    for (int i = 0; i < parts->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = parts->elems[i];
      if (Partition* old = book.Find(tp.topic, tp.partition); old != nullptr && old->paused) counters.paused--;
      Partition& p = book.Add(tp.topic, tp.partition, policies.tier_topics().contains(tp.topic), Clock::now());
      p.lane = lanes.Of(p.topic);
      p.received = &series.received_family->With({config.group, p.topic});
      p.lag = &series.lag_family->With({config.group, p.topic, std::to_string(p.partition)});
      committer.TakeOver(p, tp);
    }
    Consumer::Assign(rk, parts, cooperative);
    Log(LogLevel::kInfo, "partitions assigned", {{"count", parts->cnt}, {"group", config.group}});
    series.rebalances_assigned->Inc();
    group.SetJoined(true);
    next_lag_update = Clock::time_point{};  // the new partitions' lag at the next turn
    group.Assigned(parts, config.on_assigned);
  }

  void Revoked(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative) {
    const bool lost = rd_kafka_assignment_lost(rk);
    FinishBeforeRevoke(parts, /*commit=*/!lost);
    for (int i = 0; i < parts->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = parts->elems[i];
      if (Partition* p = book.Find(tp.topic, tp.partition); p != nullptr && p->paused) counters.paused--;
      book.Remove(tp.topic, tp.partition);
      // Not ours any more: its lag is the new owner's to report.
      series.lag_family->Remove({config.group, tp.topic, std::to_string(tp.partition)});
    }
    Consumer::Unassign(rk, parts, cooperative);
    Log(LogLevel::kInfo, lost ? "partitions lost" : "partitions revoked", {{"count", parts->cnt}, {"group", config.group}});
    (lost ? series.rebalances_lost : series.rebalances_revoked)->Inc();
    // Lost: the member is out of the group (its session ended) until it joins again.
    if (lost) group.SetJoined(false);
    group.Revoked(parts, config.on_revoked);
  }

  // Stops starting runs of `ps`, and waits up to `grace` for the running ones and then for the
  // outgoing sends, serving results meanwhile. Runs still going after that are abandoned.
  void Drain(const std::vector<Partition*>& ps, std::chrono::milliseconds grace) {
    for (Partition* p : ps) p->revoked->store(true, std::memory_order_release);
    const auto deadline = Clock::now() + grace;
    auto running = [&] { return std::any_of(ps.begin(), ps.end(), [](Partition* p) { return p->in_flight > 0; }); };
    auto sending = [&] { return std::any_of(ps.begin(), ps.end(), [](Partition* p) { return Outbox::Sending(*p); }); };
    while (running() && Clock::now() < deadline) {
      pool.WaitForResults(std::chrono::milliseconds(10));
      ProcessResults();
      if (outbox.pending() > 0) outbox.Poll(std::chrono::milliseconds(0));
      // Runs queued behind a slow handler in its chunk: let another thread skip them.
      ReclaimSlow(Clock::now());
    }
    for (int i = 0; i < pool.threads(); ++i) {
      const AttemptPtr a = pool.Current(i);
      if (a && !a->abandoned && std::find(ps.begin(), ps.end(), book.Live(a->epoch)) != ps.end()) {
        results.Abandon(*a, "the worker gave the partition up while the handler still ran", /*decide=*/false);
      }
    }
    while (sending() && Clock::now() < deadline) outbox.Poll(std::chrono::milliseconds(10));
  }

  // Before giving partitions away: let their running handlers and outgoing sends finish (bounded
  // by revoke_grace), then commit what is finished with a clean ledger (the counts of what is
  // not finished go with it), so the next owner starts after it. Lost partitions are not
  // committed: another member may own them already.
  void FinishBeforeRevoke(const rd_kafka_topic_partition_list_t* parts, bool commit) {
    std::vector<Partition*> ps;
    for (int i = 0; i < parts->cnt; ++i) {
      if (Partition* p = book.Find(parts->elems[i].topic, parts->elems[i].partition)) ps.push_back(p);
    }
    // A lease in flight for them is answered first: recorded, its records run like the others.
    if (commit) committer.Settle(config.revoke_grace);
    Drain(ps, commit ? config.revoke_grace : std::chrono::milliseconds(0));
    if (!commit) return;
    for (Partition* p : ps) book.AdvanceCommit(*p, Clock::now());
    committer.CommitChangedNow(ps, /*clean=*/true);
  }

  // ---- fetching -----------------------------------------------------------------------------

  // Tells librdkafka to pause or resume the partitions whose reasons changed (PartitionBook).
  void ApplyPauses() {
    for (Partition* p : book.TakePauseChanges()) consumer.SyncPause(*p);
  }

  // ---- shutdown -----------------------------------------------------------------------------

  void Shutdown() {
    board->SetShuttingDown();  // not ready from now on: the process is going away
    Log(LogLevel::kInfo, "worker stopping", {{"group", config.group}});
    policies.UnwatchSlots();
    // A lease in flight is answered first: its records run (or not) like the others.
    committer.Settle(config.shutdown_grace);
    std::vector<Partition*> all;
    book.ForEach([&](Partition& p) { all.push_back(&p); });
    Drain(all, config.shutdown_grace);
    for (Partition* p : all) book.AdvanceCommit(*p, Clock::now());
    // Commit while still a stable member: during the leave rebalance the broker may refuse it.
    committer.CommitAllNow(/*clean=*/true);
    consumer.Close([this] { return book.empty(); });
    // Closing revokes through the rebalance callback; whatever it did not report, report now.
    group.Revoked(nullptr, config.on_revoked);
    // Handlers abandoned above may still run: wait for them, but not for a stuck one.
    pool.BeginStop();
    for (;;) {
      bool running = false;
      for (int i = 0; i < pool.threads(); ++i) {
        const AttemptPtr a = pool.Current(i);
        if (!a) continue;
        running = true;
        if (!a->abandoned) results.Abandon(*a, "the worker is stopping", /*decide=*/false);
        if (Clock::now() >= a->stuck_at) ExitStuck(*a);
      }
      if (!running) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pool.Stop();
    series.Flush();
    Log(LogLevel::kInfo, "worker stopped",
        {{"group", config.group}, {"handled", counters.handled.load()}, {"dead_lettered", counters.dead_lettered.load()}});
  }
};

Worker::Worker(WorkerConfig config, const HandlerRegistry& handlers) {
  if (Status s = Validate(config); !s.ok()) throw std::invalid_argument(s.error().message());
  if (config.host.empty()) config.host = detail::HostName();
  impl_ = std::make_unique<Impl>(std::move(config), handlers);
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
  const Counters& c = impl_->counters;
  WorkerStats s;
  s.handled = c.handled.load();
  s.skipped = c.skipped.load();
  s.retried = c.retried.load();
  s.dead_lettered = c.dead_lettered.load();
  s.committed = c.committed.load();
  s.abandoned = c.abandoned.load();
  s.delayed = c.delayed.load();
  s.assigned_partitions = c.assigned.load();
  s.stalled_partitions = c.stalled.load();
  s.paused_partitions = static_cast<std::uint32_t>(std::max(0, c.paused.load()));
  return s;
}

}  // namespace kbus::kafka
