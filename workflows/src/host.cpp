#include "kbus/workflows/host.hpp"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <condition_variable>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "kbus/dispatcher.hpp"
#include "kbus/log.hpp"
#include "record.hpp"

namespace kbus::workflows {

// ---- WorkflowContext -------------------------------------------------------------------------

std::string WorkflowContext::RequestTimeout(std::string_view name, std::chrono::milliseconds after,
                                            std::string payload_json) {
  std::string id = std::string(envelope_.message_id) + "#" + std::to_string(timer_count_++);
  timeouts_.push_back(Timeout{id, std::string(name), std::move(payload_json), now_ms_ + after.count()});
  timeouts_changed_ = true;
  return id;
}

bool WorkflowContext::CancelTimeout(std::string_view id) {
  auto it = std::find_if(timeouts_.begin(), timeouts_.end(), [&](const Timeout& t) { return t.id == id; });
  if (it == timeouts_.end()) return false;
  timeouts_.erase(it);
  timeouts_changed_ = true;
  return true;
}

int WorkflowContext::CancelTimeouts(std::string_view name) {
  const auto n = std::erase_if(timeouts_, [&](const Timeout& t) { return t.name == name; });
  if (n > 0) timeouts_changed_ = true;
  return static_cast<int>(n);
}

void WorkflowContext::DeadLetter(std::string reason, std::string error, int attempts,
                                 std::vector<Header> headers) {
  ending_ = Ending::kFailed;
  dead_letter_ = DeadLetterRequest{std::move(reason), std::move(error), attempts, std::move(headers)};
}

// ---- MemoryStateStore ------------------------------------------------------------------------

Status MemoryStateStore::Load(std::int32_t partition,
                              const std::function<void(std::string_view, std::string_view)>& each) {
  std::map<std::string, std::string, std::less<>> copy;
  {
    std::lock_guard lock(mu_);
    if (auto it = parts_.find(partition); it != parts_.end()) copy = it->second;
  }
  for (const auto& [k, v] : copy) each(k, v);
  return Ok();
}

Status MemoryStateStore::Write(std::int32_t partition, std::string_view key, std::string_view value) {
  std::lock_guard lock(mu_);
  if (fail_ > 0) {
    --fail_;
    return Error(ErrorCode::kTransport, "the state store refused the write (test failure)", true);
  }
  parts_[partition].insert_or_assign(std::string(key), std::string(value));
  ++writes_;
  return Ok();
}

Status MemoryStateStore::Erase(std::int32_t partition, std::string_view key) {
  std::lock_guard lock(mu_);
  if (auto it = parts_.find(partition); it != parts_.end()) {
    if (auto k = it->second.find(key); k != it->second.end()) it->second.erase(k);
  }
  return Ok();
}

void MemoryStateStore::FailWrites(int n) {
  std::lock_guard lock(mu_);
  fail_ = n;
}

std::optional<std::string> MemoryStateStore::Get(std::int32_t partition, std::string_view key) const {
  std::lock_guard lock(mu_);
  auto it = parts_.find(partition);
  if (it == parts_.end()) return std::nullopt;
  auto k = it->second.find(key);
  if (k == it->second.end()) return std::nullopt;
  return k->second;
}

std::uint64_t MemoryStateStore::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

// ---- WorkflowHost ----------------------------------------------------------------------------

namespace {

using Record = detail::Instance;

std::int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The id under which a message is remembered. A redriven copy is a new message: it may start a
// new run of a workflow whose previous run failed.
std::string DedupeId(const Context& ctx) {
  std::string id(ctx.envelope().message_id);
  if (auto redrive = ctx.record().FindHeader(header::kRedriveOf)) {
    id += "/redrive:";
    id += *redrive;
  }
  return id;
}

std::vector<Header> CopyHeaders(const InboundRecord& record) {
  std::vector<Header> out;
  out.reserve(record.headers.size());
  for (const HeaderView& h : record.headers) out.push_back({std::string(h.name), std::string(h.value)});
  return out;
}

struct TimerKey {
  std::int64_t due_ms;
  std::string workflow_id;
  std::string timeout_id;
  auto operator<=>(const TimerKey&) const = default;
};

}  // namespace

struct WorkflowHost::Impl {
  struct Partition {
    std::int32_t number = -1;
    std::uint64_t epoch = 0;
    bool ready = false;
    bool revoked = false;
    std::unordered_map<std::string, Record> instances;
    std::set<std::string> busy;  // ids a handler is working on
    std::set<TimerKey> timers;
    std::map<std::pair<std::string, std::string>, std::int64_t> fired;  // (id, timeout) -> when
  };
  using PartitionPtr = std::shared_ptr<Partition>;

  Impl(const detail::Spec& s, HostConfig c, StateStore& st) : spec(s), config(std::move(c)), store(st) {
    if (config.group.empty()) throw std::invalid_argument("workflow host: the group is required (dead letters go to <group>.dlq)");
    if (!config.now_ms) config.now_ms = SystemNowMs;
    if (spec.name.empty()) throw std::invalid_argument("workflow: the name must not be empty");
    if (spec.schema < 1) throw std::invalid_argument("workflow " + spec.name + ": the schema must be >= 1");
    bool any_starter = false;
    std::set<std::string> types;
    for (const detail::Step& step : spec.steps) {
      any_starter = any_starter || step.starter;
      if (!types.insert(step.type).second) {
        throw std::invalid_argument("workflow " + spec.name + ": message type " + step.type + " is declared twice");
      }
    }
    if (!any_starter) throw std::invalid_argument("workflow " + spec.name + ": no message starts it (StartedBy)");
    for (const auto& [name, fn] : spec.timeouts) {
      if (name.starts_with("kbus.")) {
        throw std::invalid_argument("workflow " + spec.name + ": timeout names beginning with 'kbus.' are reserved");
      }
    }
    timeout_type = spec.name + ".timeout";
  }

  const detail::Spec spec;  // a copy: the Workflow need not outlive the host
  HostConfig config;
  StateStore& store;
  std::string timeout_type;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::int32_t, PartitionPtr> partitions;
  std::uint64_t next_epoch = 1;
  struct Loader {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
  };
  std::vector<Loader> loaders;
  HostStats stats;
  bool stopping = false;
  std::thread timer;
  std::condition_variable timer_cv;

  template <class F>
  void Count(F f) {
    std::lock_guard lock(mu);
    f(stats);
  }

  // ---- partitions ----

  void OnAssigned(const std::vector<std::int32_t>& numbers) {
    std::vector<Loader> finished;
    {
      std::lock_guard lock(mu);
      // Loaders of earlier assignments that are done: joined here, so a long life of
      // rebalances does not pile up threads.
      auto done = std::partition(loaders.begin(), loaders.end(), [](const Loader& l) { return !l.done->load(); });
      std::move(done, loaders.end(), std::back_inserter(finished));
      loaders.erase(done, loaders.end());
      for (std::int32_t n : numbers) {
        auto p = std::make_shared<Partition>();
        p->number = n;
        p->epoch = next_epoch++;
        if (auto old = partitions.find(n); old != partitions.end()) old->second->revoked = true;
        partitions[n] = p;
        Loader l;
        l.thread = std::thread([this, p, done = l.done] {
          Load(p);
          done->store(true);
        });
        loaders.push_back(std::move(l));
      }
    }
    for (Loader& l : finished) l.thread.join();
  }

  void OnRevoked(const std::vector<std::int32_t>& numbers) {
    std::lock_guard lock(mu);
    for (std::int32_t n : numbers) {
      auto it = partitions.find(n);
      if (it == partitions.end()) continue;
      it->second->revoked = true;
      stats.instances -= it->second->instances.size();
      partitions.erase(it);
    }
    cv.notify_all();
  }

  void Load(const PartitionPtr& p) {
    for (int attempt = 1;; ++attempt) {
      {
        std::lock_guard lock(mu);
        if (p->revoked || stopping) return;
      }
      std::unordered_map<std::string, Record> loaded;
      std::size_t bad = 0;
      Status s = store.Load(p->number, [&](std::string_view key, std::string_view value) {
        Result<Record> in = detail::Decode(value);
        if (!in.ok() || in->id != key) {
          ++bad;
          Log(LogLevel::kError, "workflow state record unreadable, skipped",
              {{"workflow", spec.name}, {"partition", p->number}, {"workflow_id", key},
               {"error", in.ok() ? std::string("its id is not its key") : in.error().message()}});
          return;
        }
        loaded.insert_or_assign(std::string(key), std::move(*in));
      });
      if (s.ok()) {
        std::lock_guard lock(mu);
        if (p->revoked) return;
        for (auto& [id, in] : loaded) {
          for (const Timeout& t : in.timeouts) p->timers.insert(TimerKey{t.due_ms, id, t.id});
        }
        stats.instances += loaded.size();
        p->instances = std::move(loaded);
        p->ready = true;
        cv.notify_all();
        timer_cv.notify_all();
        Log(LogLevel::kInfo, "workflow states loaded",
            {{"workflow", spec.name}, {"partition", p->number}, {"instances", p->instances.size()},
             {"unreadable", bad}});
        return;
      }
      Log(LogLevel::kError, "workflow states not loaded, trying again",
          {{"workflow", spec.name}, {"partition", p->number}, {"attempt", attempt}, {"error", s.error().message()}});
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::seconds(1), [&] { return p->revoked || stopping; });
    }
  }

  // The partition, once loaded; nullptr when it is not (or no longer) ours.
  PartitionPtr WaitReady(std::int32_t number, Context& ctx) {
    std::unique_lock lock(mu);
    for (;;) {
      auto it = partitions.find(number);
      if (it == partitions.end() || stopping || ctx.Cancelled()) return nullptr;
      if (it->second->ready) return it->second;
      cv.wait_for(lock, std::chrono::milliseconds(200));
    }
  }

  // ---- handling ----

  Outcome OnMessage(const detail::Step& step, const JsonValue& payload, Context& ctx) {
    std::string id;
    if (step.key) {
      Result<std::string> key = step.key(payload);
      if (!key.ok()) return Outcome::DeadLetterFor("decode-error", key.error().message());
      id = std::move(*key);
    } else {
      id = std::string(ctx.envelope().workflow_id);
    }
    if (id.empty()) {
      // No instance can ever match it, whatever On<M>::not_found says: a bad input, never silent.
      Count([](HostStats& s) { ++s.no_id; });
      return Outcome::DeadLetterFor(
          "workflow-id-missing", spec.name + ": " +
                                     (step.key ? "the key extractor gave an empty workflow id for " + step.type
                                               : "a " + step.type + " without a kbus-workflow-id header"));
    }
    const InboundRecord& record = ctx.record();
    if (record.topic != spec.options.input_topic || record.key != id) return Rekey(record, id, ctx);
    return Process(record.partition, id, ctx, &step, &payload, nullptr);
  }

  Outcome OnTimeoutMessage(const JsonValue& payload, Context& ctx) {
    auto tid = payload.Find("timeout_id");
    auto timeout_id = tid ? tid->AsString() : std::nullopt;
    const std::string id(ctx.envelope().workflow_id);
    if (!timeout_id || id.empty()) {
      return Outcome::DeadLetterFor("decode-error", "a workflow timeout message needs timeout_id and a workflow id");
    }
    const std::string t(*timeout_id);
    return Process(ctx.record().partition, id, ctx, nullptr, nullptr, &t);
  }

  Outcome Rekey(const InboundRecord& record, const std::string& id, Context& ctx) {
    OutgoingRecord out;
    out.topic = spec.options.input_topic;
    out.key = id;
    out.payload = std::string(record.payload);
    for (const HeaderView& h : record.headers) {
      if (h.name == header::kWorkflowId || h.name == header::kDeliveryCount) continue;
      out.headers.push_back({std::string(h.name), std::string(h.value)});
    }
    out.headers.push_back({std::string(header::kWorkflowId), id});
    ctx.AddOutgoing(std::move(out));
    Count([](HostStats& s) { ++s.rekeyed; });
    return Ack();
  }

  Outcome NotFoundOutcome(const detail::Step& step, const std::string& id, Context& ctx, std::string_view why) {
    Count([](HostStats& s) { ++s.not_found; });
    const std::string text = "no running " + spec.name + " workflow for id '" + id + "': " + std::string(why);
    switch (step.not_found) {
      case NotFound::kRetry:
        return Retry(std::chrono::seconds(1), text);
      case NotFound::kDeadLetter:
        return Outcome::DeadLetterFor("workflow-not-found", text);
      case NotFound::kLog:
        break;
    }
    Log(LogLevel::kInfo, "workflow not found",
        {{"workflow", spec.name}, {"workflow_id", id}, {"type", step.type},
         {"message_id", ctx.envelope().message_id}, {"reason", why}});
    return Ack();
  }

  // Releases an instance's busy mark when a handling ends, however it ends.
  struct BusyGuard {
    Impl* impl;
    PartitionPtr p;
    std::string id;
    ~BusyGuard() {
      std::lock_guard lock(impl->mu);
      p->busy.erase(id);
    }
  };

  Outcome Process(std::int32_t number, const std::string& id, Context& ctx, const detail::Step* step,
                  const JsonValue* payload, const std::string* timeout_id) {
    PartitionPtr p = WaitReady(number, ctx);
    if (!p) return Retry(std::chrono::milliseconds(500), "input partition " + std::to_string(number) + " is not ready here");
    const std::string message_id = DedupeId(ctx);
    std::optional<Record> current;
    {
      std::lock_guard lock(mu);
      if (!p->busy.insert(id).second) {
        // Cannot happen with key ordering on the input topic; never run two at once anyway.
        return Retry(std::chrono::milliseconds(100), "workflow " + id + " is busy");
      }
      if (auto it = p->instances.find(id); it != p->instances.end()) current = it->second;
    }
    BusyGuard guard{this, p, id};
    const std::int64_t now = config.now_ms();

    if (current && !message_id.empty() && current->Processed(message_id)) {
      Count([](HostStats& s) { ++s.duplicates; });
      if (current->last_message == message_id) {
        // Its state was written, perhaps not its messages: send them again (same ids).
        for (const OutgoingRecord& r : current->outbox) ctx.AddOutgoing(r);
      }
      return Ack();
    }

    Record next;
    bool fresh = false;
    const detail::StepFn* run = nullptr;
    std::optional<Timeout> fired;
    if (timeout_id != nullptr) {
      if (!current) return Ack();  // removed meanwhile
      auto t = std::find_if(current->timeouts.begin(), current->timeouts.end(),
                            [&](const Timeout& x) { return x.id == *timeout_id; });
      if (t == current->timeouts.end()) {
        Count([](HostStats& s) { ++s.duplicates; });
        return Ack();  // fired already, or cancelled
      }
      fired = *t;
      if (fired->name == detail::kExpireTimeout) return Expire(p, *current, ctx);
      auto fn = spec.timeouts.find(fired->name);
      if (fn == spec.timeouts.end()) {
        Log(LogLevel::kError, "workflow timeout has no handler, dropped",
            {{"workflow", spec.name}, {"workflow_id", id}, {"timeout", fired->name}});
      } else {
        run = &fn->second;
      }
      next = *current;
      next.timeouts.erase(std::find_if(next.timeouts.begin(), next.timeouts.end(),
                                       [&](const Timeout& x) { return x.id == *timeout_id; }));
    } else if (!current || current->finished()) {
      if (!step->starter) {
        if (current) {
          Count([](HostStats& s) { ++s.late; });
          Log(LogLevel::kInfo, "message for a finished workflow",
              {{"workflow", spec.name}, {"workflow_id", id}, {"status", current->status},
               {"type", step->type}, {"message_id", ctx.envelope().message_id}});
          return Ack();
        }
        return NotFoundOutcome(*step, id, ctx, "it was never started, or has expired");
      }
      fresh = true;
      next.workflow = spec.name;
      next.id = id;
      next.schema = spec.schema;
      next.run = current ? current->run + 1 : 1;
      next.version = current ? current->version : 0;
      next.created_ms = now;
      next.correlation_id = std::string(ctx.envelope().correlation_id);
      if (current) next.processed = current->processed;
      const InboundRecord& r = ctx.record();
      next.origin = detail::Origin{std::string(r.topic), r.partition, r.offset, r.timestamp_ms,
                                   std::string(r.key), std::string(r.payload), CopyHeaders(r)};
      next.state_json = spec.initial_state();
      run = &step->run;
    } else {
      next = *current;
      run = &step->run;
    }

    bool upgraded = false;
    if (next.schema != spec.schema) {
      if (Status s = UpgradeState(next); !s.ok()) {
        return Retry(std::chrono::seconds(1), s.error().message());
      }
      upgraded = true;
    }

    const std::string before = next.state_json;
    WorkflowContext wctx(id, ctx.envelope(), now, next.run, next.timeouts, 0);
    if (run != nullptr) {
      // A handler's exception propagates: the bus retries the message, nothing was written.
      Status s = (*run)(payload, next.state_json, wctx, fired ? &*fired : nullptr);
      if (!s.ok()) {
        // The message or the stored state does not decode: no retry can fix it.
        return Outcome::DeadLetterFor("decode-error", s.error().message());
      }
    }
    Count([](HostStats& s) { ++s.handled; });

    const bool unchanged = !fresh && !upgraded && !fired && next.state_json == before &&
                           wctx.outgoing().empty() && !wctx.timeouts_changed() &&
                           wctx.ending() == WorkflowContext::Ending::kNone;
    if (unchanged) {
      Count([](HostStats& s) { ++s.unchanged; });
      return Ack();
    }

    ++next.version;
    next.updated_ms = now;
    if (!message_id.empty()) next.Remember(message_id, spec.options.remembered_messages);
    next.last_message = message_id;
    next.outbox = std::move(wctx.outgoing());
    next.timeouts = std::move(wctx.timeouts());
    std::uint64_t started = fresh ? 1 : 0, completed = 0, failed = 0;
    if (wctx.ending() != WorkflowContext::Ending::kNone) {
      const bool ok = wctx.ending() == WorkflowContext::Ending::kCompleted;
      next.status = ok ? detail::kCompleted : detail::kFailed;
      next.finished_ms = now;
      next.timeouts.clear();
      next.timeouts.push_back(Timeout{message_id + "#expire", std::string(detail::kExpireTimeout), "",
                                      now + spec.options.completed_retention.count()});
      (ok ? completed : failed) = 1;
      if (wctx.dead_letter()) next.outbox.push_back(DeadLetterOf(next, *wctx.dead_letter()));
    }

    std::string encoded = detail::Encode(next);
    if (encoded.size() > spec.options.max_state_bytes) {
      return Outcome::DeadLetterFor(
          "state-too-large", "the " + spec.name + " state record of '" + id + "' would be " +
                                 std::to_string(encoded.size()) + " bytes, above max_state_bytes " +
                                 std::to_string(spec.options.max_state_bytes));
    }
    {
      std::lock_guard lock(mu);
      if (p->revoked) return Retry(std::chrono::milliseconds(500), "input partition revoked meanwhile");
    }
    // An abandoned delivery (its visibility timeout passed) must not write: the worker may be
    // delivering the message again already.
    if (ctx.Cancelled()) return Retry(std::chrono::milliseconds(0), "the delivery was abandoned before its state write");
    if (Status s = store.Write(number, id, encoded); !s.ok()) {
      return Retry(std::chrono::milliseconds(500), "the workflow state was not written: " + s.error().message());
    }
    for (const OutgoingRecord& r : next.outbox) ctx.AddOutgoing(r);
    {
      std::lock_guard lock(mu);
      if (current) {
        for (const Timeout& t : current->timeouts) {
          p->timers.erase(TimerKey{t.due_ms, id, t.id});
          const bool kept = std::any_of(next.timeouts.begin(), next.timeouts.end(),
                                        [&](const Timeout& n) { return n.id == t.id; });
          if (!kept) p->fired.erase({id, t.id});  // fired or cancelled: forget its firing
        }
      }
      for (const Timeout& t : next.timeouts) p->timers.insert(TimerKey{t.due_ms, id, t.id});
      if (!current) ++stats.instances;
      p->instances.insert_or_assign(id, std::move(next));
      ++stats.state_writes;
      stats.state_bytes += encoded.size();
      stats.started += started;
      stats.completed += completed;
      stats.failed += failed;
    }
    timer_cv.notify_all();
    return Ack();
  }

  Outcome Expire(const PartitionPtr& p, const Record& current, Context&) {
    if (!current.finished()) return Ack();
    {
      std::lock_guard lock(mu);
      if (p->revoked) return Retry(std::chrono::milliseconds(500), "input partition revoked meanwhile");
    }
    if (Status s = store.Erase(p->number, current.id); !s.ok()) {
      return Retry(std::chrono::milliseconds(500), "the workflow state was not removed: " + s.error().message());
    }
    std::lock_guard lock(mu);
    for (const Timeout& t : current.timeouts) {
      p->timers.erase(TimerKey{t.due_ms, current.id, t.id});
      p->fired.erase({current.id, t.id});
    }
    if (p->instances.erase(current.id) > 0) --stats.instances;
    ++stats.expired;
    return Ack();
  }

  Status UpgradeState(Record& in) const {
    if (in.schema > spec.schema) {
      return Error(ErrorCode::kInvalidArgument,
                   "workflow " + spec.name + " '" + in.id + "' was stored with schema " + std::to_string(in.schema) +
                       ", newer than this program's " + std::to_string(spec.schema) + ": run the newer version");
    }
    while (in.schema < spec.schema) {
      auto up = spec.upgrades.find(in.schema);
      if (up == spec.upgrades.end()) {
        return Error(ErrorCode::kInvalidArgument, "workflow " + spec.name + " has no upgrade from schema " +
                                                      std::to_string(in.schema));
      }
      Result<std::string> json = up->second(in.state_json);
      if (!json.ok()) {
        return Error(ErrorCode::kDecode, "workflow " + spec.name + " '" + in.id + "': upgrade from schema " +
                                             std::to_string(in.schema) + " failed: " + json.error().message());
      }
      in.state_json = std::move(*json);
      ++in.schema;
    }
    return Ok();
  }

  OutgoingRecord DeadLetterOf(const Record& in, const WorkflowContext::DeadLetterRequest& req) const {
    detail::Origin o = in.origin.value_or(detail::Origin{});
    std::vector<HeaderView> views;
    views.reserve(o.headers.size());
    for (const Header& h : o.headers) views.push_back({h.name, h.value});
    InboundRecord r;
    r.topic = o.topic;
    r.partition = o.partition;
    r.offset = o.offset;
    r.timestamp_ms = o.timestamp_ms;
    r.key = o.key;
    r.payload = o.payload;
    r.headers = views;
    DeadLetterInfo info;
    info.group = config.group;
    info.reason = req.reason;
    info.error = req.error;
    info.attempts = req.attempts;
    info.host = config.host;
    OutgoingRecord dlq = MakeDeadLetter(r, info);
    dlq.headers.push_back({"kbus-dlq-workflow", spec.name});
    dlq.headers.push_back({"kbus-dlq-workflow-id", in.id});
    for (const Header& h : req.headers) dlq.headers.push_back(h);
    return dlq;
  }

  // ---- timers ----

  int FireDue() {
    struct Due {
      std::string id, timeout_id, name, correlation_id;
      std::int64_t due_ms;
    };
    std::vector<Due> due;
    const std::int64_t now = config.now_ms();
    {
      std::lock_guard lock(mu);
      for (auto& [n, p] : partitions) {
        if (!p->ready) continue;
        for (const TimerKey& k : p->timers) {
          if (k.due_ms > now) break;
          auto fired = p->fired.find({k.workflow_id, k.timeout_id});
          if (fired != p->fired.end() && now - fired->second < config.refire_after.count()) continue;
          auto in = p->instances.find(k.workflow_id);
          if (in == p->instances.end()) continue;
          std::string name;
          for (const Timeout& t : in->second.timeouts) {
            if (t.id == k.timeout_id) name = t.name;
          }
          p->fired[{k.workflow_id, k.timeout_id}] = now;
          due.push_back(Due{k.workflow_id, k.timeout_id, std::move(name), in->second.correlation_id, k.due_ms});
        }
      }
    }
    int sent = 0;
    for (const Due& d : due) {
      JsonWriter w;
      w.StartObject();
      w.Key("timeout_id");
      w.String(d.timeout_id);
      w.Key("name");
      w.String(d.name);
      w.Key("due_ms");
      w.Int64(d.due_ms);
      w.EndObject();
      SendOptions options;
      options.topic = spec.options.input_topic;
      options.key = d.id;
      options.workflow_id = d.id;
      options.correlation_id = d.correlation_id;
      OutgoingRecord r = BuildRecord(timeout_type, MessageKind::kCommand, spec.options.input_topic, w.Take(),
                                     std::move(options), nullptr, 0);
      if (!config.send) break;
      if (Status s = config.send(r); !s.ok()) {
        Log(LogLevel::kWarn, "workflow timeout not sent, will try again",
            {{"workflow", spec.name}, {"workflow_id", d.id}, {"timeout", d.name}, {"error", s.error().message()}});
        std::lock_guard lock(mu);
        for (auto& [n, p] : partitions) p->fired.erase({d.id, d.timeout_id});
        continue;
      }
      ++sent;
    }
    if (sent > 0) Count([&](HostStats& s) { s.timeouts_fired += static_cast<std::uint64_t>(sent); });
    return sent;
  }

  void TimerLoop() {
    std::unique_lock lock(mu);
    while (!stopping) {
      lock.unlock();
      try {
        FireDue();
      } catch (const std::exception& e) {
        Log(LogLevel::kError, "workflow timer failed", {{"workflow", spec.name}, {"error", e.what()}});
      }
      lock.lock();
      timer_cv.wait_for(lock, config.timer_tick, [&] { return stopping; });
    }
  }

  void Stop() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    timer_cv.notify_all();
    if (timer.joinable()) timer.join();
    std::vector<Loader> threads;
    {
      std::lock_guard lock(mu);
      threads.swap(loaders);
    }
    for (Loader& l : threads) {
      if (l.thread.joinable()) l.thread.join();
    }
  }

  static InstanceInfo Info(const Record& in) {
    return InstanceInfo{in.id, in.status, in.run, in.version, in.schema, in.state_json, in.timeouts, in.outbox};
  }
};

WorkflowHost::WorkflowHost(const detail::Spec& spec, HostConfig config, StateStore& store)
    : impl_(std::make_unique<Impl>(spec, std::move(config), store)) {}

WorkflowHost::~WorkflowHost() { Stop(); }

void WorkflowHost::Register(HandlerRegistry& registry) {
  Impl* impl = impl_.get();
  for (const detail::Step& step : impl->spec.steps) {
    const detail::Step* s = &step;
    registry.AddRoute(HandlerRegistry::Route{
        step.type, step.kind, step.topic,
        [impl, s](const JsonValue& payload, Context& ctx) { return impl->OnMessage(*s, payload, ctx); },
        impl->spec.options.policy});
    // Re-keyed copies arrive on the input topic: the route's topic is only for subscription.
  }
  registry.AddRoute(HandlerRegistry::Route{
      impl->timeout_type, MessageKind::kCommand, impl->spec.options.input_topic,
      [impl](const JsonValue& payload, Context& ctx) { return impl->OnTimeoutMessage(payload, ctx); },
      impl->spec.options.policy});
}

std::vector<std::string> WorkflowHost::ExtraTopics() const { return {impl_->spec.options.input_topic}; }
const std::string& WorkflowHost::input_topic() const { return impl_->spec.options.input_topic; }
const std::string& WorkflowHost::state_topic() const { return impl_->spec.options.state_topic; }
const std::string& WorkflowHost::timeout_type() const { return impl_->timeout_type; }

void WorkflowHost::OnAssigned(const std::vector<std::int32_t>& partitions) { impl_->OnAssigned(partitions); }
void WorkflowHost::OnRevoked(const std::vector<std::int32_t>& partitions) { impl_->OnRevoked(partitions); }

void WorkflowHost::Start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->timer.joinable() || impl_->stopping) return;
  impl_->timer = std::thread([impl = impl_.get()] { impl->TimerLoop(); });
}

void WorkflowHost::Stop() { impl_->Stop(); }
int WorkflowHost::FireDue() { return impl_->FireDue(); }

HostStats WorkflowHost::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

std::optional<InstanceInfo> WorkflowHost::Instance(std::string_view workflow_id) const {
  std::lock_guard lock(impl_->mu);
  for (const auto& [n, p] : impl_->partitions) {
    auto it = p->instances.find(std::string(workflow_id));
    if (it != p->instances.end()) return Impl::Info(it->second);
  }
  return std::nullopt;
}

std::vector<InstanceInfo> WorkflowHost::Instances() const {
  std::lock_guard lock(impl_->mu);
  std::vector<InstanceInfo> out;
  for (const auto& [n, p] : impl_->partitions) {
    for (const auto& [id, in] : p->instances) out.push_back(Impl::Info(in));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.workflow_id < b.workflow_id; });
  return out;
}

}  // namespace kbus::workflows
