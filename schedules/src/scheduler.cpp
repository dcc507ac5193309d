#include "kbus/schedules/scheduler.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"
#include "pending_index.hpp"
#include "rd_handles.hpp"
#include "schedule_book.hpp"

namespace kbus::schedules {

namespace {

using std::chrono::milliseconds;
using detail::PendingIndex;

constexpr std::size_t kMaxStaged = 20000;      // records read back and waiting for their time
constexpr std::size_t kMaxCaught = 20000;      // records seen due soon, kept so as not to read them back
constexpr milliseconds kSendRetry{1000};       // after a refused send
constexpr milliseconds kMaxPollWait{20};       // bounds lateness: the loop looks at the clock this often
constexpr milliseconds kDrainTimeout{10000};   // sends under way, at revoke and at stop
constexpr int kPollBatch = 10000;              // records handled between two looks at the clock

std::int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<std::int64_t> ParseMs(std::string_view text) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// A pending record as read: what its delivery needs.
struct Held {
  std::string key;  // the message id
  std::string payload;
  std::vector<Header> headers;
};

Held HoldMessage(const rd_kafka_message_t* m) {
  Held h;
  if (m->key) h.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) h.payload.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      h.headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
  }
  return h;
}

std::optional<std::string_view> Find(const std::vector<Header>& headers, std::string_view name) {
  std::optional<std::string_view> out;
  for (const Header& h : headers) {
    if (h.name == name) out = h.value;
  }
  return out;
}

// The message a pending record stands for, ready to send; an error names what is missing.
Result<OutgoingRecord> Destination(const Held& held) {
  auto topic = Find(held.headers, header::kDeliverTopic);
  if (!topic || topic->empty()) {
    return Error(ErrorCode::kInvalidArgument, "the pending record has no " + std::string(header::kDeliverTopic) + " header");
  }
  OutgoingRecord r;
  r.topic = std::string(*topic);
  r.key = std::string(Find(held.headers, header::kDeliverKey).value_or(""));
  r.payload = held.payload;
  for (const Header& h : held.headers) {
    if (h.name != header::kDeliverTopic && h.name != header::kDeliverKey) r.headers.push_back(h);
  }
  return r;
}

struct Staged {
  PendingIndex::Entry entry;
  std::optional<Held> record;
  std::int64_t not_before_ms = 0;  // after a refused send
  bool asked = false;              // its read-back is under way
};

struct PendingPartition {
  PendingIndex index;
  bool live = false;                      // read to its end once: only then does anything fire
  std::map<std::int64_t, Held> caught;    // by offset: records seen due soon
  std::map<std::int64_t, Staged> staged;  // by offset: due within the prefetch, read back
  std::map<std::int64_t, Staged> sending; // by offset: sent, waiting for the acknowledgement
};

struct Completion {
  std::int32_t partition;
  std::int64_t offset;
  Status status;
};

}  // namespace

Status Validate(const SchedulerConfig& config) {
  auto bad = [](const std::string& what) { return Error(ErrorCode::kInvalidArgument, what); };
  if (config.client.brokers.empty()) return bad("brokers: empty; give host:port[,host:port]");
  if (config.group.empty()) return bad("group: empty; the scheduler's instances share a consumer group");
  if (config.pending_topic.empty()) return bad("pending_topic: empty");
  if (config.schedules_topic.empty()) return bad("schedules_topic: empty");
  if (config.pending_topic == config.schedules_topic) {
    return bad("schedules_topic: the same topic as pending_topic ('" + config.pending_topic + "')");
  }
  if (config.prefetch < milliseconds(100)) return bad("prefetch: below 100 ms");
  if (config.session_timeout < milliseconds(1000)) return bad("session_timeout: below 1 s");
  return Ok();
}

struct Scheduler::Impl {
  explicit Impl(SchedulerConfig c)
      : config(std::move(c)),
        metrics(config.metrics ? config.metrics : std::make_shared<metrics::Registry>()),
        health(config.health ? config.health : std::make_shared<health::Board>()),
        producer(ProducerOptions(config)),
        book(config, producer) {
    if (Status s = Validate(config); !s.ok()) throw std::invalid_argument(s.error().message());
    std::map<std::string, std::string> props = {
        {"bootstrap.servers", config.client.brokers},
        {"client.id", config.client.client_id + "-scheduler"},
        {"group.id", config.group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "true"},
        {"session.timeout.ms", std::to_string(config.session_timeout.count())},
        {"heartbeat.interval.ms", std::to_string(std::max<long long>(100, config.session_timeout.count() / 5))},
        {"fetch.wait.max.ms", "20"},
    };
    // Set by the scheduler alone (scheduler.hpp): a -X naming one is ignored.
    static const std::set<std::string> kReserved = {
        "group.id", "group.instance.id", "enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof",
        "auto.offset.reset", "partition.assignment.strategy", "log.queue"};
    for (const auto& [k, v] : config.client.properties) {
      if (!kReserved.count(k)) props[k] = v;
    }
    auto conf = kafka::detail::MakeConf(props);
    kafka::detail::RouteLogs(conf.get());
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::OnRebalance);
    consumer = kafka::detail::NewHandle(RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(consumer.get());

    fired_total = &metrics->AddCounter("kbus_scheduler_delivered_total",
                                       "Delayed messages delivered by this instance", {"group"})
                       .With({config.group});
    lateness = &metrics->AddHistogram("kbus_scheduler_lateness_seconds",
                                      "How long after its due time a delayed message was acknowledged",
                                      {"group"}, {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60})
                    .With({config.group});
    pending_gauge = &metrics->AddGauge("kbus_scheduler_pending", "Delayed messages waiting in the partitions owned here",
                                       {"group"})
                         .With({config.group});
    schedules_gauge = &metrics->AddGauge("kbus_scheduler_schedules", "Schedules in the partitions owned here", {"group"})
                           .With({config.group});
    ticks_total = &metrics->AddCounter("kbus_scheduler_ticks_fired_total", "Schedule ticks fired by this instance", {"group"})
                       .With({config.group});
    collector = metrics->OnCollect([this] {
      const auto s = Snapshot();
      pending_gauge->Set(static_cast<double>(s.pending));
      schedules_gauge->Set(static_cast<double>(s.schedules));
      if (s.fired > ticks_total->value()) ticks_total->Inc(s.fired - ticks_total->value());
    });
    probe = health->Add("scheduler " + config.group, [this] {
      health::Report r;
      const auto s = Snapshot();
      r.ready = joined.load() && !stop.load();
      if (!r.ready) r.reason = stop.load() ? "stopping" : "the group is not joined yet";
      r.details = {{"group", config.group}, {"partitions", static_cast<std::int64_t>(s.partitions)},
                   {"loading", static_cast<std::int64_t>(s.loading)}, {"pending", static_cast<std::int64_t>(s.pending)},
                   {"schedules", static_cast<std::int64_t>(s.schedules)}};
      return r;
    });
  }

  static kafka::ProducerConfig ProducerOptions(const SchedulerConfig& config) {
    kafka::ProducerConfig p;
    p.client = config.client;
    p.client.client_id += "-scheduler";
    p.linger = milliseconds(1);
    return p;
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->Assigned(parts);
      rd_kafka_assign(rk, parts);
    } else {
      self->Revoked(parts);
      rd_kafka_assign(rk, nullptr);
    }
  }

  bool IsRunTopic(std::string_view topic) const {
    return std::find(config.run_topics.begin(), config.run_topics.end(), topic) != config.run_topics.end();
  }

  // Where each partition is read from: the pending and schedules topics from their beginning
  // (the log is the state), run topics from what the group committed, else from their end.
  void Assigned(rd_kafka_topic_partition_list_t* parts) {
    auto runs = kafka::detail::RdPartitionListPtr(rd_kafka_topic_partition_list_new(parts->cnt));
    for (int i = 0; i < parts->cnt; ++i) {
      if (IsRunTopic(parts->elems[i].topic)) {
        rd_kafka_topic_partition_list_add(runs.get(), parts->elems[i].topic, parts->elems[i].partition);
      }
    }
    if (runs->cnt > 0 && rd_kafka_committed(consumer.get(), runs.get(), 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < runs->cnt; ++i) runs->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    }
    std::lock_guard lock(mu);
    for (int i = 0; i < parts->cnt; ++i) {
      auto& p = parts->elems[i];
      if (config.pending_topic == p.topic) pending[p.partition] = PendingPartition{};
      if (config.schedules_topic == p.topic) book.Assign(p.partition);
      if (IsRunTopic(p.topic)) {
        auto* c = rd_kafka_topic_partition_list_find(runs.get(), p.topic, p.partition);
        p.offset = c && c->offset >= 0 ? c->offset : RD_KAFKA_OFFSET_END;
      } else {
        p.offset = RD_KAFKA_OFFSET_BEGINNING;
      }
    }
    joined = true;
    Log(LogLevel::kInfo, "scheduler partitions assigned", {{"group", config.group}, {"count", parts->cnt}});
  }

  void Revoked(const rd_kafka_topic_partition_list_t* parts) {
    // What was sent is waited for, so the next owner finds its tombstones (or at worst sends a
    // duplicate with the same id).
    Drain();
    CommitRuns(/*sync=*/true);
    std::lock_guard lock(mu);
    for (int i = 0; i < parts->cnt; ++i) {
      const auto& p = parts->elems[i];
      if (config.pending_topic == p.topic) pending.erase(p.partition);
      if (config.schedules_topic == p.topic) book.Revoke(p.partition);
    }
    run_positions.clear();
    Log(LogLevel::kInfo, "scheduler partitions revoked", {{"group", config.group}, {"count", parts->cnt}});
  }

  void Drain() {
    for (int round = 0; round < 3; ++round) {
      (void)producer.Flush(kDrainTimeout);
      if (!TakeCompletions()) break;  // tombstones sent by the completions: flush them too
    }
  }

  // --- the pending topic ---

  void OnPending(PendingPartition& part, const rd_kafka_message_t* m) {
    if (!m->key || m->key_len == 0) return;  // not a kbus pending record: nothing to index
    const std::string_view key(static_cast<const char*>(m->key), m->key_len);
    const auto hash = detail::KeyHash(key);
    if (!m->payload) {
      part.index.Erase(hash);
      return;
    }
    std::int64_t due = 0;  // a record without a readable time is due at once (and dead-lettered if it cannot go anywhere)
    rd_kafka_headers_t* hdrs = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, std::string(header::kDeliverAt).c_str(), &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        value) {
      due = ParseMs(std::string_view(static_cast<const char*>(value), size)).value_or(0);
    }
    part.index.Put(hash, due, m->offset);
    if (due <= NowMs() + config.prefetch.count() && part.caught.size() < kMaxCaught) {
      part.caught[m->offset] = HoldMessage(m);
    }
  }

  // Moves what falls due within the prefetch into `staged`. Returns the offsets of the records
  // to read back, sorted, once the first of them is due within half the prefetch: one read-back
  // then covers what falls due in the next half, rather than one per loop turn.
  std::vector<std::int64_t> Stage(PendingPartition& part, std::int64_t now) {
    if (part.staged.size() < kMaxStaged) {
      for (auto& e : part.index.TakeDue(now + config.prefetch.count(), kMaxStaged - part.staged.size())) {
        Staged s{e, std::nullopt, 0, false};
        if (auto it = part.caught.find(e.offset); it != part.caught.end()) s.record = std::move(it->second);
        part.staged[e.offset] = std::move(s);
      }
    }
    part.caught.clear();
    std::vector<std::int64_t> missing;
    std::int64_t first_due = INT64_MAX;
    for (auto& [offset, s] : part.staged) {
      if (s.record || s.asked) continue;
      missing.push_back(offset);
      first_due = std::min(first_due, s.entry.due_ms);
    }
    if (first_due > now + config.prefetch.count() / 2) return {};
    for (std::int64_t offset : missing) part.staged[offset].asked = true;
    return missing;
  }

  // The read-back thread: reads the records asked for (sorted offsets, by partition) in one pass
  // from the first to the last offset of each partition, with one reader kept for the purpose
  // (a new client per read-back would cost threads, a connection and a metadata request each
  // time). It runs beside the loop, so that what is due is sent while records are read back.
  void ReadBackLoop() {
    std::unique_ptr<kafka::PartitionReader> reader;
    for (;;) {
      std::map<std::int32_t, std::vector<std::int64_t>> wanted;
      {
        std::unique_lock lock(read_mu);
        read_cv.wait(lock, [&] { return stop_reading || !to_read.empty(); });
        if (stop_reading) return;
        wanted.swap(to_read);
      }
      if (!reader) {
        kafka::ClientConfig client = config.client;
        client.client_id += "-scheduler-reader";
        client.properties["fetch.wait.max.ms"] = "10";
        auto opened = kafka::PartitionReader::Open(client, {.topic = config.pending_topic});
        if (!opened.ok()) {
          Log(LogLevel::kWarn, "scheduler cannot read delayed messages back; trying again",
              {{"topic", config.pending_topic}, {"error", opened.error().message()}});
          Unask(wanted);
          continue;
        }
        reader = std::move(*opened);
      }
      std::vector<kafka::PartitionSpan> spans;
      for (const auto& [partition, offsets] : wanted) {
        spans.push_back({.partition = partition, .from = offsets.front(), .to = offsets.back() + 1});
      }
      std::vector<std::pair<std::int32_t, std::pair<std::int64_t, Held>>> got;
      Status read = reader->Assign(spans);
      if (read.ok()) {
        read = reader->ReadToEnd(std::chrono::seconds(10), [&](kafka::ReaderRecord&& r) {
          const auto& offsets = wanted[r.partition];
          if (!r.payload || !std::binary_search(offsets.begin(), offsets.end(), r.offset)) return true;
          Held h;
          h.key = r.key.value_or("");
          h.payload = std::move(*r.payload);
          for (auto& hd : r.headers) h.headers.push_back({std::move(hd.name), hd.value.value_or("")});
          got.push_back({r.partition, {r.offset, std::move(h)}});
          return true;
        });
      }
      if (!read.ok()) {
        Log(LogLevel::kWarn, "scheduler could not read delayed messages back; trying again",
            {{"topic", config.pending_topic}, {"error", read.error().message()}});
        reader.reset();  // a fresh one next time
      }
      std::lock_guard lock(mu);
      for (auto& [partition, record] : got) {
        auto pit = pending.find(partition);
        if (pit == pending.end()) continue;
        auto it = pit->second.staged.find(record.first);
        if (it != pit->second.staged.end() && !it->second.record) it->second.record = std::move(record.second);
      }
      UnaskLocked(wanted);  // what did not come is asked again
    }
  }

  void Unask(const std::map<std::int32_t, std::vector<std::int64_t>>& wanted) {
    std::lock_guard lock(mu);
    UnaskLocked(wanted);
  }
  void UnaskLocked(const std::map<std::int32_t, std::vector<std::int64_t>>& wanted) {
    for (const auto& [partition, offsets] : wanted) {
      auto pit = pending.find(partition);
      if (pit == pending.end()) continue;
      for (std::int64_t offset : offsets) {
        auto it = pit->second.staged.find(offset);
        if (it != pit->second.staged.end() && !it->second.record) it->second.asked = false;
      }
    }
  }

  void Fire(std::int32_t partition, PendingPartition& part, std::int64_t now) {
    for (auto it = part.staged.begin(); it != part.staged.end();) {
      Staged& s = it->second;
      if (!part.index.Live(s.entry)) {  // cancelled or superseded meanwhile
        it = part.staged.erase(it);
        continue;
      }
      if (s.entry.due_ms > now || !s.record || s.not_before_ms > now) {
        ++it;
        continue;
      }
      Result<OutgoingRecord> out = Destination(*s.record);
      if (!out.ok()) out = DeadLetter(partition, s, out.error().message());
      const std::int64_t offset = it->first;
      const std::int64_t due = s.entry.due_ms;
      const Status queued = producer.Produce(*out, [this, partition, offset, due](const Status& st) {
        if (st.ok()) lateness->Observe(static_cast<double>(std::max<std::int64_t>(0, NowMs() - due)) / 1000.0);
        std::lock_guard lock(done_mu);
        done.push_back({partition, offset, st});
      });
      if (!queued.ok()) {
        s.not_before_ms = now + kSendRetry.count();
        ++it;
        continue;
      }
      part.sending[offset] = std::move(s);
      it = part.staged.erase(it);
    }
  }

  OutgoingRecord DeadLetter(std::int32_t partition, const Staged& s, const std::string& why) {
    Log(LogLevel::kError, "a pending record cannot be delivered; dead-lettering it",
        {{"topic", config.pending_topic}, {"partition", partition}, {"offset", s.entry.offset}, {"error", why}});
    OutgoingRecord r;
    r.topic = config.group + ".dlq";
    r.key = s.record->key;
    r.payload = s.record->payload;
    r.headers = s.record->headers;
    r.headers.push_back({std::string(header::kDlqReason), "bad-pending-record"});
    r.headers.push_back({std::string(header::kDlqError), why});
    r.headers.push_back({std::string(header::kDlqTopic), config.pending_topic});
    r.headers.push_back({std::string(header::kDlqPartition), std::to_string(partition)});
    r.headers.push_back({std::string(header::kDlqOffset), std::to_string(s.entry.offset)});
    r.headers.push_back({std::string(header::kDlqGroup), config.group});
    return r;
  }

  // Acknowledged sends get their tombstone; refused ones are staged again. True when any came.
  bool TakeCompletions() {
    std::vector<Completion> batch;
    {
      std::lock_guard lock(done_mu);
      batch.swap(done);
    }
    std::lock_guard lock(mu);
    for (Completion& c : batch) {
      auto pit = pending.find(c.partition);
      if (pit == pending.end()) continue;
      auto sit = pit->second.sending.find(c.offset);
      if (sit == pit->second.sending.end()) continue;
      Staged s = std::move(sit->second);
      pit->second.sending.erase(sit);
      if (!c.status.ok()) {
        Log(LogLevel::kWarn, "a delayed message was refused by the broker; sending it again",
            {{"partition", c.partition}, {"offset", c.offset}, {"error", c.status.error().message()}});
        s.not_before_ms = NowMs() + kSendRetry.count();
        pit->second.staged[c.offset] = std::move(s);
        continue;
      }
      delivered.fetch_add(1);
      fired_total->Inc();
      OutgoingRecord tomb = CancelDelayed(s.record->key, config.pending_topic);
      tomb.partition = c.partition;
      // A lost tombstone costs a duplicate after the next takeover, with the same id.
      (void)producer.Produce(tomb);
    }
    return !batch.empty();
  }

  // --- run topics: the events that end scheduled runs, passed to each schedule's owner ---

  void OnRunEvent(const rd_kafka_message_t* m, const char* topic) {
    Held h = HoldMessage(m);
    const auto type = Find(h.headers, header::kType).value_or("");
    const auto correlation = Find(h.headers, header::kCorrelationId).value_or("");
    auto ref = ParseRunCorrelation(correlation);
    const bool progress = type == MessageTraits<handlers::ProcessStarted>::kType ||
                          type == MessageTraits<handlers::ProcessHeartbeat>::kType ||
                          type == MessageTraits<handlers::ProcessProgress>::kType;
    if (ref && !progress) {
      Request r;
      const auto id = Find(h.headers, header::kId).value_or("");
      r.id = "run-ended/" + (id.empty() ? std::string(topic) + "/" + std::to_string(m->partition) + "/" + std::to_string(m->offset)
                                        : std::string(id));
      r.op = Request::Op::kRunEnded;
      r.run = std::string(correlation);
      r.event_type = std::string(type);
      r.outcome = OutcomeOf(h.payload).value_or(std::string(type));
      OutgoingRecord out;
      out.topic = config.schedules_topic;
      out.key = ref->schedule_id;
      out.payload = EncodeRecord({.request = std::move(r)});
      // Waited for: the event's offset is committed only once its owner can see it.
      if (Status s = producer.SendSync(out); !s.ok()) {
        Log(LogLevel::kWarn, "a run's end was not passed to its schedule", {{"schedule", ref->schedule_id}, {"error", s.error().message()}});
        rd_kafka_seek(m->rkt, m->partition, m->offset, 1000);
        return;
      }
    }
    run_positions[{topic, m->partition}] = m->offset + 1;
    runs_dirty = true;
  }

  static std::optional<std::string> OutcomeOf(std::string_view payload) {
    // The launcher's and workflows' end events say how the run went in a top-level "outcome".
    rapidjson::Document d;
    d.Parse(payload.data(), payload.size());
    if (d.HasParseError() || !d.IsObject()) return std::nullopt;
    auto it = d.FindMember("outcome");
    if (it == d.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
  }

  void CommitRuns(bool sync) {
    if (!runs_dirty) return;
    auto list = kafka::detail::RdPartitionListPtr(rd_kafka_topic_partition_list_new(static_cast<int>(run_positions.size())));
    for (const auto& [tp, offset] : run_positions) {
      rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset = offset;
    }
    rd_kafka_commit(consumer.get(), list.get(), sync ? 0 : 1);
    runs_dirty = false;
  }

  // --- the loop ---

  void Run() {
    std::vector<std::string> topics = {config.pending_topic, config.schedules_topic};
    for (const auto& t : config.run_topics) topics.push_back(t);
    auto list = kafka::detail::RdPartitionListPtr(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
    for (const auto& t : topics) rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer.get(), list.get()); err) {
      throw std::runtime_error(std::string("scheduler: cannot subscribe: ") + rd_kafka_err2str(err));
    }
    std::thread read_back([this] { ReadBackLoop(); });
    Log(LogLevel::kInfo, "scheduler started",
        {{"group", config.group}, {"pending_topic", config.pending_topic}, {"schedules_topic", config.schedules_topic}});
    while (!stop.load()) {
      milliseconds wait = kMaxPollWait;
      kafka::detail::RdMessagePtr m(rd_kafka_consumer_poll(consumer.get(), static_cast<int>(wait.count())));
      // At most kPollBatch records between two looks at the clock; the last one polled is
      // handled before the loop goes on, never dropped.
      for (int n = 1; m; ++n) {
        OnMessage(m.get());
        if (n == kPollBatch) break;
        m.reset(rd_kafka_consumer_poll(consumer.get(), 0));
      }
      TakeCompletions();
      CommitRuns(/*sync=*/false);
      const std::int64_t now = NowMs();
      std::lock_guard lock(mu);
      // What is due goes first; reading records back takes a round trip.
      std::map<std::int32_t, std::vector<std::int64_t>> read_back;
      for (auto& [partition, part] : pending) {
        if (!part.live) continue;
        Fire(partition, part, now);
        if (auto missing = Stage(part, now); !missing.empty()) read_back[partition] = std::move(missing);
      }
      if (!read_back.empty()) {
        std::lock_guard read_lock(read_mu);
        for (auto& [partition, offsets] : read_back) {
          auto& queued = to_read[partition];
          queued.insert(queued.end(), offsets.begin(), offsets.end());
          std::sort(queued.begin(), queued.end());
        }
        read_cv.notify_one();
      }
      book.Tick(now);
    }
    {
      std::lock_guard lock(read_mu);
      stop_reading = true;
    }
    read_cv.notify_one();
    read_back.join();
    Drain();
    rd_kafka_consumer_close(consumer.get());
    Log(LogLevel::kInfo, "scheduler stopped", {{"group", config.group}});
  }

  void OnMessage(const rd_kafka_message_t* m) {
    const char* topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    std::lock_guard lock(mu);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (config.pending_topic == topic) {
        if (auto it = pending.find(m->partition); it != pending.end() && !it->second.live) {
          it->second.live = true;
          Log(LogLevel::kInfo, "delayed messages loaded",
              {{"topic", topic}, {"partition", m->partition}, {"pending", it->second.index.size()}});
        }
      } else if (config.schedules_topic == topic) {
        book.Loaded(m->partition);
      }
      return;
    }
    if (m->err) {
      // A run topic nobody created yet is reported on every metadata refresh: once is enough.
      std::string error = rd_kafka_message_errstr(m);
      if (reported_errors.insert(error).second) {
        Log(LogLevel::kWarn, "scheduler consumer error", {{"topic", topic}, {"error", error}});
      }
      return;
    }
    if (config.pending_topic == topic) {
      if (auto it = pending.find(m->partition); it != pending.end()) OnPending(it->second, m);
    } else if (config.schedules_topic == topic) {
      book.Apply(m->partition, m->offset, HoldView(m));
    } else if (IsRunTopic(topic)) {
      OnRunEvent(m, topic);
    }
  }

  static ScheduleBook::RecordView HoldView(const rd_kafka_message_t* m) {
    ScheduleBook::RecordView v;
    if (m->key) v.key = std::string_view(static_cast<const char*>(m->key), m->key_len);
    if (m->payload) v.value = std::string_view(static_cast<const char*>(m->payload), m->len);
    return v;
  }

  SchedulerStats Snapshot() {
    std::lock_guard lock(mu);
    SchedulerStats s;
    for (auto& [p, part] : pending) {
      s.pending += part.index.size();
      ++s.partitions;
      if (!part.live) ++s.loading;
    }
    auto b = book.Stats();
    s.schedules = b.schedules;
    s.partitions += b.partitions;
    s.loading += b.loading;
    s.delivered = delivered.load();
    s.fired = b.fired;
    return s;
  }

  SchedulerConfig config;
  std::shared_ptr<metrics::Registry> metrics;
  std::shared_ptr<health::Board> health;
  kafka::Producer producer;
  kafka::detail::RdKafkaPtr consumer;
  std::mutex mu;  // the partitions: the loop thread, Stats() and the rebalance callback (same thread)
  std::map<std::int32_t, PendingPartition> pending;
  ScheduleBook book;
  // The read-back thread's work: offsets to read, by partition.
  std::mutex read_mu;
  std::condition_variable read_cv;
  std::map<std::int32_t, std::vector<std::int64_t>> to_read;
  bool stop_reading = false;
  std::mutex done_mu;
  std::vector<Completion> done;
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> run_positions;  // next offset to commit
  bool runs_dirty = false;
  std::set<std::string> reported_errors;
  std::atomic<bool> stop{false};
  std::atomic<bool> joined{false};
  std::atomic<std::uint64_t> delivered{0};
  metrics::Counter* fired_total = nullptr;
  metrics::Histogram* lateness = nullptr;
  metrics::Gauge* pending_gauge = nullptr;
  metrics::Gauge* schedules_gauge = nullptr;
  metrics::Counter* ticks_total = nullptr;
  metrics::CollectorHandle collector;
  health::ProbeHandle probe;
};

Scheduler::Scheduler(SchedulerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Scheduler::~Scheduler() = default;
void Scheduler::Run() { impl_->Run(); }
void Scheduler::Stop() noexcept { impl_->stop.store(true); }
SchedulerStats Scheduler::Stats() const { return impl_->Snapshot(); }

}  // namespace kbus::schedules
