#include "kbus/kafka/worker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kbus/delivery_ledger.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"
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

}  // namespace

struct Worker::Impl {
  // One consumed record that is not finished yet. Records of a partition stay in offset order.
  struct Entry {
    enum class State {
      kQueued,   // waiting for its turn
      kWaiting,  // a retry (of the handler, or of a dead-letter send) is due at `due`
      kSending,  // the handler acked; waiting for the broker to acknowledge its sends
      kDone,     // may be committed
    };
    std::int64_t offset = 0;
    RdMessagePtr msg;
    State state = State::kQueued;
    // Deliveries counted in the ledger, by earlier owners too. A delivery is counted (leased)
    // before the handler runs, so a crash during it still counts.
    int deliveries = 0;
    bool ticket = false;   // a lease for the next run is recorded; the run consumes it
    bool suspect = false;  // delivered before an unclean takeover: runs alone, leased alone
    int pending_sends = 0;
    bool send_failed = false;
    bool dead_letter = false;  // the pending or next send is the dead-letter copy
    std::string_view reason;
    std::string error;
    Clock::time_point due{};
  };

  struct Partition {
    std::string topic;
    std::int32_t partition = 0;
    std::deque<Entry> entries;
    std::size_t cursor = 0;           // entries before it have been dispatched successfully
    std::int64_t commit_next = -1;    // next offset to commit; -1: nothing finished yet
    std::int64_t committed = -1;      // last commit the broker accepted
    bool paused = false;
    std::uint64_t epoch = 0;  // unique per assignment: late delivery reports must not match
    // The previous owner's ledger, read at assignment: counts per offset, and whether it left
    // cleanly (a dirty ledger means deliveries may have been running when it died).
    std::map<std::int64_t, int> prior;
    bool dirty_takeover = false;
    std::string committed_metadata;  // the ledger text of the last accepted commit
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

  Impl(WorkerConfig c, const HandlerRegistry& h)
      : config(std::move(c)), handlers(h), dispatcher(h), rng(std::random_device{}()) {}

  WorkerConfig config;
  const HandlerRegistry& handlers;
  Dispatcher dispatcher;
  std::string host;
  detail::RdKafkaPtr consumer;
  std::unique_ptr<Producer> producer;
  std::atomic<bool> stop{false};
  std::uint64_t next_epoch = 1;
  std::map<TpKey, Partition, TpLess> partitions;
  std::vector<HeaderView> header_buf;
  std::mt19937_64 rng;
  int pending_sends = 0;
  Clock::time_point next_commit{};
  // Earliest `due` of a waiting record, max() when none waits. It may be earlier than the truth
  // (after a revocation, say); PumpDue then recomputes it. Kept so that the hot loop does not
  // scan every partition per record.
  Clock::time_point next_due = Clock::time_point::max();
  static constexpr int kMaxWave = 4000;
  // Records leased ahead per partition: a crash charges each of them one delivery.
  static constexpr std::size_t kLeaseWindow = 4000;
  // How soon to try again when the broker refused a lease commit (e.g. during a rebalance).
  static constexpr std::chrono::milliseconds kLeaseRetry{100};

  // Fast path for the common case of many records in a row from one partition.
  const rd_kafka_topic_t* last_rkt = nullptr;
  std::int32_t last_partition = -1;
  Partition* last = nullptr;  // reset whenever `partitions` changes

  // Written only by the poll thread, read by Stats() from any thread.
  std::atomic<std::uint64_t> handled{0}, skipped{0}, retried{0}, dead_lettered{0}, committed{0};
  // One writer, so a plain load and store is enough, without a locked read-modify-write.
  static void Count(std::atomic<std::uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  std::atomic<std::uint32_t> assigned{0};

  // ---- set-up -------------------------------------------------------------------------------

  void Open() {
    auto props = ConsumerProperties(config);
    for (const auto& [k, v] : config.client.properties) props[k] = v;
    auto conf = detail::MakeConf(props);
    detail::RouteLogs(conf.get());
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::RebalanceTrampoline);
    consumer = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
    // Serve logs, rebalances and commit results from rd_kafka_consumer_poll, on our thread.
    rd_kafka_poll_set_consumer(consumer.get());

    ProducerConfig pc;
    pc.client = config.client;
    pc.client.client_id = config.client.client_id + "-out";
    pc.background_poll = false;  // delivery reports are served by Run()'s loop, on this thread
    producer = std::make_unique<Producer>(pc);

    std::vector<std::string> topics = handlers.Topics();
    for (const auto& t : config.extra_topics) topics.push_back(t);
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
    std::string joined;
    for (const auto& t : topics) joined += (joined.empty() ? "" : ",") + t;
    Log(LogLevel::kInfo, "worker started",
        {{"group", config.group}, {"topics", joined}, {"brokers", config.client.brokers}});
  }

  // ---- the loop -----------------------------------------------------------------------------

  // Records are taken in waves: what the consumer has ready, up to kMaxWave. One lease commit
  // counts the wave's deliveries in the ledger before any of them runs.
  void Run() {
    next_commit = Clock::now() + config.commit_interval;
    while (!stop.load(std::memory_order_relaxed)) {
      int taken = 0;
      for (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.get(), PollTimeoutMs());
           m != nullptr; m = rd_kafka_consumer_poll(consumer.get(), 0)) {
        OnMessage(RdMessagePtr(m));
        if (++taken >= kMaxWave) break;
      }
      if (pending_sends > 0) producer->Poll(std::chrono::milliseconds(0));
      const auto now = Clock::now();
      if (taken > 0 || now >= next_due) LeaseAndPump(now);
      if (now >= next_commit) {
        CommitAll(/*clean=*/false);
        next_commit = now + config.commit_interval;
      }
    }
    Shutdown();
  }

  int PollTimeoutMs() const {
    // Wake for the earliest due retry; otherwise a short wait keeps Stop() responsive.
    auto wait = std::chrono::milliseconds(100);
    if (pending_sends > 0) wait = std::chrono::milliseconds(5);
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

  void OnMessage(RdMessagePtr m) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      Log(LogLevel::kWarn, "consumer error",
          {{"error", rd_kafka_message_errstr(m.get())},
           {"topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""}});
      return;
    }
    Partition* p = FindPartition(m.get());
    if (p == nullptr) return;  // no longer ours: the new owner reads it from the committed offset
    Entry e;
    e.offset = m->offset;
    e.msg = std::move(m);
    if (!p->prior.empty()) {
      if (auto it = p->prior.find(e.offset); it != p->prior.end()) {
        e.deliveries = it->second;
        e.suspect = p->dirty_takeover;
        p->prior.erase(it);
      }
    }
    if (e.deliveries > 0 && e.deliveries >= MaxDeliveries(PolicyOf(*e.msg))) {
      // Its deliveries are used up, some perhaps by crashes: dead-letter it without running.
      e.dead_letter = true;
      e.reason = e.suspect ? reason::kSuspectedCrash : reason::kMaxDeliveries;
      e.error = "delivered " + std::to_string(e.deliveries) + " times without finishing" +
                (e.suspect ? "; the last owner stopped uncleanly while it ran" : "");
    }
    p->entries.push_back(std::move(e));
    if (!p->paused && p->entries.size() >= config.max_buffered_per_partition) SetPaused(*p, true);
  }

  // Runs every record of the partition whose turn it is.
  void Pump(Partition& p, Clock::time_point now) {
    while (p.cursor < p.entries.size()) {
      Entry& e = p.entries[p.cursor];
      if (e.state == Entry::State::kWaiting && e.due > now) break;  // holds back the rest
      if (e.state == Entry::State::kQueued || e.state == Entry::State::kWaiting) {
        if (!e.dead_letter && !e.ticket) break;  // not leased yet: never run uncounted
        Dispatch(p, e);
        if (e.state == Entry::State::kWaiting) break;
      }
      ++p.cursor;
    }
    AdvanceCommit(p);
  }

  // Counts the next deliveries of every partition in one lease commit, then runs them. Records
  // of a partition are leased in order from its cursor, up to kLeaseWindow, stopping at a record
  // still waiting for its retry. A suspect (delivered before an unclean takeover) is leased
  // alone, and nothing after it until it finished, so a record that kills the process is
  // pinpointed and charges its neighbours nothing.
  void LeaseAndPump(Clock::time_point now) {
    std::vector<Entry*> leased;
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    for (auto& [key, p] : partitions) {
      const std::size_t first_leased = leased.size();
      std::size_t window = 0;
      for (std::size_t i = p.cursor; i < p.entries.size() && window < kLeaseWindow; ++i) {
        Entry& e = p.entries[i];
        if (e.state == Entry::State::kSending || e.state == Entry::State::kDone || e.dead_letter) continue;
        if (e.state == Entry::State::kWaiting && e.due > now) break;
        ++window;
        if (e.ticket) {
          if (e.suspect) break;
          continue;
        }
        if (e.suspect && leased.size() > first_leased) break;  // a suspect goes alone
        e.ticket = true;
        ++e.deliveries;
        leased.push_back(&e);
        if (e.suspect) break;
      }
      if (leased.size() == first_leased) continue;
      std::int64_t covered = 0;
      std::string metadata = LedgerFor(p, /*clean=*/false, &covered);
      // A record whose count did not fit in the ledger is not leased: it waits for room.
      while (leased.size() > first_leased && leased.back()->offset > covered) {
        leased.back()->ticket = false;
        --leased.back()->deliveries;
        leased.pop_back();
      }
      if (leased.size() == first_leased) continue;
      AddCommit(list.get(), p, std::move(metadata));
    }
    if (!leased.empty() && !Commit(list.get())) {
      // Not recorded, so not run: take the leases back and try again shortly.
      for (Entry* e : leased) {
        e->ticket = false;
        --e->deliveries;
      }
      next_due = std::min(next_due, now + kLeaseRetry);
      return;
    }
    PumpDue(now);
  }

  void PumpDue(Clock::time_point now) {
    next_due = Clock::time_point::max();
    for (auto& [key, p] : partitions) {
      Pump(p, now);
      if (p.cursor >= p.entries.size()) continue;
      const Entry& e = p.entries[p.cursor];
      if (e.state == Entry::State::kWaiting) NoteWaiting(e.due);
      // Past the lease window: lease the next records on the next turn of the loop.
      if (e.state == Entry::State::kQueued && !e.ticket && !e.dead_letter) NoteWaiting(now);
    }
  }

  void NoteWaiting(Clock::time_point due) { next_due = std::min(next_due, due); }

  // Pops the finished prefix: its last offset + 1 is what the next commit will say.
  void AdvanceCommit(Partition& p) {
    while (!p.entries.empty() && p.entries.front().state == Entry::State::kDone) {
      p.commit_next = p.entries.front().offset + 1;
      p.entries.pop_front();
      if (p.cursor > 0) --p.cursor;
    }
    if (p.paused && p.entries.size() < config.max_buffered_per_partition / 2 + 1) SetPaused(p, false);
  }

  // ---- one record ---------------------------------------------------------------------------

  // The delivery policy of a message type, or nullptr for the worker's settings. Looked up only
  // on the paths that decide about a failure, never per handled record.
  const DeliveryPolicy* PolicyOf(std::string_view type) const {
    const HandlerRegistry::Route* route = type.empty() ? nullptr : handlers.Find(type);
    return route == nullptr ? nullptr : &route->policy;
  }
  const DeliveryPolicy* PolicyOf(const rd_kafka_message_t& m) const {
    rd_kafka_headers_t* hdrs = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    if (rd_kafka_message_headers(&m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, header::kType.data(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        value == nullptr) {
      return nullptr;
    }
    return PolicyOf(std::string_view(static_cast<const char*>(value), size));
  }
  int MaxDeliveries(const DeliveryPolicy* policy) const {
    return policy && policy->max_deliveries ? *policy->max_deliveries : config.max_deliveries;
  }

  void Dispatch(Partition& p, Entry& e) {
    if (e.dead_letter) {  // a dead-letter send that failed before: send it again
      SendDeadLetter(p, e);
      return;
    }
    const InboundRecord record = ViewRecord(e.msg.get(), header_buf);
    e.ticket = false;  // this run is the delivery the lease counted
    DispatchResult r = dispatcher.Dispatch(record, e.deliveries);
    switch (r.kind) {
      case DispatchResult::Kind::kAck:
      case DispatchResult::Kind::kSkip:
        Count(r.kind == DispatchResult::Kind::kAck ? handled : skipped);
        if (r.outgoing.empty()) {
          e.state = Entry::State::kDone;
          e.msg.reset();
        } else {
          SendAll(p, e, std::move(r.outgoing));
        }
        return;
      case DispatchResult::Kind::kRetry:
        if (e.deliveries >= MaxDeliveries(PolicyOf(r.type))) {
          e.reason = reason::kHandlerError;
          e.error = std::move(r.error);
          SendDeadLetter(p, e);
        } else {
          Count(retried);
          e.state = Entry::State::kWaiting;
          e.due = Clock::now() + std::max(r.retry_after, Backoff(e.deliveries, PolicyOf(r.type)));
          NoteWaiting(e.due);
          Log(LogLevel::kWarn, "handler failed, will retry",
              {{"topic", record.topic}, {"partition", record.partition},
               {"offset", record.offset}, {"message_id", MessageId(record)},
               {"attempt", e.deliveries}, {"error", r.error}});
        }
        return;
      case DispatchResult::Kind::kDeadLetter:
        e.reason = r.reason;
        e.error = std::move(r.error);
        SendDeadLetter(p, e);
        return;
    }
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

  void SendAll(Partition& p, Entry& e, std::vector<OutgoingRecord> outgoing) {
    e.state = Entry::State::kSending;
    e.send_failed = false;
    e.pending_sends = static_cast<int>(outgoing.size());
    for (const auto& rec : outgoing) Send(p, e, rec);
    if (e.pending_sends == 0) SendsFinished(p, e);  // every send was refused at once
  }

  void SendDeadLetter(Partition& p, Entry& e) {
    const InboundRecord record = ViewRecord(e.msg.get(), header_buf);
    Log(LogLevel::kWarn, "dead-lettering record",
        {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
         {"message_id", MessageId(record)}, {"reason", e.reason}, {"error", e.error},
         {"attempts", e.deliveries}});
    e.dead_letter = true;
    e.state = Entry::State::kSending;
    e.send_failed = false;
    e.pending_sends = 1;
    Send(p, e, MakeDeadLetter(record, DeadLetterInfo{config.group, e.reason, e.error, e.deliveries, host}));
    if (e.pending_sends == 0) SendsFinished(p, e);
  }

  // Queues one send for `e`. A refusal is recorded in `e` at once; a delivery report arrives
  // later through OnSent. `e` may not be in `p.entries` yet (the fast path in OnMessage).
  void Send(Partition& p, Entry& e, const OutgoingRecord& rec) {
    Status queued = producer->Produce(
        rec, [this, epoch = p.epoch, topic = p.topic, part = p.partition, offset = e.offset](const Status& s) {
          --pending_sends;
          OnSent(epoch, topic, part, offset, s);
        });
    if (queued.ok()) {
      ++pending_sends;
    } else {
      e.send_failed = true;
      e.error = queued.error().message();
      --e.pending_sends;
    }
  }

  // A delivery report for a record sent on behalf of (topic, partition, offset).
  void OnSent(std::uint64_t epoch, const std::string& topic, std::int32_t part, std::int64_t offset,
              const Status& s) {
    auto it = partitions.find(TpView(topic, part));
    // Revoked meanwhile (perhaps assigned again since): the owner redoes the record anyway.
    if (it == partitions.end() || it->second.epoch != epoch) return;
    Partition& p = it->second;
    auto e_it = std::lower_bound(p.entries.begin(), p.entries.end(), offset,
                                 [](const Entry& e, std::int64_t o) { return e.offset < o; });
    if (e_it == p.entries.end() || e_it->offset != offset) return;
    Entry& e = *e_it;
    if (!s.ok()) {
      e.send_failed = true;
      e.error = s.error().message();
    }
    if (--e.pending_sends > 0) return;
    const std::size_t index = static_cast<std::size_t>(e_it - p.entries.begin());
    SendsFinished(p, e);
    if (e.state == Entry::State::kWaiting) p.cursor = std::min(p.cursor, index);
    AdvanceCommit(p);
  }

  // Every send of `e` has its verdict.
  void SendsFinished(Partition& p, Entry& e) {
    if (!e.send_failed) {
      if (e.dead_letter) Count(dead_lettered);
      e.state = Entry::State::kDone;
      e.msg.reset();
      return;
    }
    // A send failed. Never commit past it: run the handler again (its outgoing ids are the
    // same, so consumers can drop duplicates), or, for a dead-letter copy, send it again.
    Log(LogLevel::kError, e.dead_letter ? "dead-letter send failed, will retry" : "outgoing send failed",
        {{"topic", p.topic}, {"partition", p.partition}, {"offset", e.offset}, {"error", e.error}});
    const DeliveryPolicy* policy = PolicyOf(*e.msg);
    if (!e.dead_letter && e.deliveries >= MaxDeliveries(policy)) {
      e.reason = reason::kPublishError;
      SendDeadLetter(p, e);
      return;
    }
    e.state = Entry::State::kWaiting;
    e.due = Clock::now() + Backoff(e.deliveries, policy);
    NoteWaiting(e.due);
  }

  // ---- offsets ------------------------------------------------------------------------------

  // Where the partition's next commit points: after the finished prefix, or at the first
  // record we hold when nothing finished yet; -1 when there is nothing to say.
  static std::int64_t CommitOffset(const Partition& p) {
    if (p.commit_next >= 0) return p.commit_next;
    return p.entries.empty() ? -1 : p.entries.front().offset;
  }

  // The ledger of the partition's counted, unfinished records. Clean when asked (revocation,
  // shutdown) or when nothing counted is unfinished.
  // At most kMaxLedgerBytes: counts of the highest offsets are left out first, and
  // `*covered_until` says up to where counts were written.
  std::string LedgerFor(const Partition& p, bool clean, std::int64_t* covered_until = nullptr) {
    DeliveryLedger ledger;
    for (const auto& e : p.entries) {
      if (e.state != Entry::State::kDone && e.deliveries > 0) ledger.deliveries[e.offset] = e.deliveries;
    }
    // Counts of an earlier owner for records not fetched yet must not be forgotten.
    for (const auto& [offset, count] : p.prior) ledger.deliveries.emplace(offset, count);
    ledger.clean = clean || ledger.deliveries.empty();
    std::int64_t covered = 0;
    std::string text = ledger.Encode(CommitOffset(p), kMaxLedgerBytes, &covered);
    if (!ledger.deliveries.empty() && covered < ledger.deliveries.rbegin()->first && !ledger_full_logged) {
      ledger_full_logged = true;  // once per worker: it repeats on every commit while it lasts
      Log(LogLevel::kWarn, "delivery ledger full: counts past an offset are not recorded",
          {{"topic", p.topic}, {"partition", p.partition}, {"covered_until", covered},
           {"records", ledger.deliveries.size()}});
    }
    if (covered_until != nullptr) *covered_until = covered;
    return text;
  }
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
    }
  }

  void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      // The previous owners' ledgers: how often each unfinished record was delivered already.
      ReadLedgers(rk, parts);
      for (int i = 0; i < parts->cnt; ++i) {
        const rd_kafka_topic_partition_t& tp = parts->elems[i];
        Partition p;
        p.topic = tp.topic;
        p.partition = tp.partition;
        p.epoch = next_epoch++;
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
        partitions.emplace(TpKey(p.topic, p.partition), std::move(p));
      }
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, parts)) {
          Log(LogLevel::kError, "incremental assign failed", {{"error", rd_kafka_error_string(e)}});
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(rk, parts);
      }
      Log(LogLevel::kInfo, "partitions assigned", {{"count", parts->cnt}, {"group", config.group}});
    } else {
      const bool lost = rd_kafka_assignment_lost(rk);
      if (!lost) FinishBeforeRevoke(parts);
      for (int i = 0; i < parts->cnt; ++i) {
        auto it = partitions.find(TpView(parts->elems[i].topic, parts->elems[i].partition));
        if (it != partitions.end()) partitions.erase(it);
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
    }
    last = nullptr;
    last_rkt = nullptr;
    assigned = static_cast<std::uint32_t>(partitions.size());
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

  // Before giving partitions away: let their outgoing sends finish (bounded by the grace
  // period), then commit what is finished with a clean ledger (the counts of what is not
  // finished go with it), so the next owner starts after it.
  void FinishBeforeRevoke(const rd_kafka_topic_partition_list_t* parts) {
    const auto deadline = Clock::now() + config.shutdown_grace;
    auto sending = [&] {
      for (int i = 0; i < parts->cnt; ++i) {
        auto it = partitions.find(TpView(parts->elems[i].topic, parts->elems[i].partition));
        if (it == partitions.end()) continue;
        for (const auto& e : it->second.entries) {
          if (e.state == Entry::State::kSending) return true;
        }
      }
      return false;
    };
    while (sending() && Clock::now() < deadline) producer->Poll(std::chrono::milliseconds(10));
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(parts->cnt));
    for (int i = 0; i < parts->cnt; ++i) {
      auto it = partitions.find(TpView(parts->elems[i].topic, parts->elems[i].partition));
      if (it == partitions.end()) continue;
      Partition& p = it->second;
      AdvanceCommit(p);
      if (CommitOffset(p) < 0) continue;
      std::string metadata = LedgerFor(p, /*clean=*/true);
      if (CommitOffset(p) > p.committed || metadata != p.committed_metadata) {
        AddCommit(list.get(), p, std::move(metadata));
      }
    }
    Commit(list.get());
  }

  void SetPaused(Partition& p, bool pause) {
    RdPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
    const rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(consumer.get(), list.get())
                                          : rd_kafka_resume_partitions(consumer.get(), list.get());
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) p.paused = pause;
  }

  // ---- shutdown -----------------------------------------------------------------------------

  void Shutdown() {
    Log(LogLevel::kInfo, "worker stopping", {{"group", config.group}});
    const auto deadline = Clock::now() + config.shutdown_grace;
    while (pending_sends > 0 && Clock::now() < deadline) producer->Poll(std::chrono::milliseconds(10));
    for (auto& [key, p] : partitions) AdvanceCommit(p);
    // Commit while still a stable member: during the leave rebalance the broker may refuse it.
    CommitAll(/*clean=*/true);
    if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer.get())) {
      Log(LogLevel::kWarn, "consumer close failed", {{"error", rd_kafka_err2str(err)}});
    }
    Log(LogLevel::kInfo, "worker stopped",
        {{"group", config.group}, {"handled", handled.load()}, {"dead_lettered", dead_lettered.load()}});
  }
};

Worker::Worker(WorkerConfig config, const HandlerRegistry& handlers) {
  if (Status s = Validate(config); !s.ok()) throw std::invalid_argument(s.error().message());
  if (config.host.empty()) config.host = detail::HostName();
  impl_ = std::make_unique<Impl>(std::move(config), handlers);
  impl_->host = impl_->config.host;
  impl_->Open();
}

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
  s.assigned_partitions = impl_->assigned.load();
  return s;
}

}  // namespace kbus::kafka
