#include "kbus/workflows/host.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <iterator>
#include <limits>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "kbus/dead_letter.hpp"
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

Result<std::string> CompactResult(std::string_view json) {
  JsonDocument doc;
  if (Status s = doc.Parse(json); !s.ok()) {
    return Error(ErrorCode::kDecode, "the result is not one JSON value: " + s.error().message());
  }
  std::string compact = doc.Root().ToJson();
  if (compact.size() > kMaxResultBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 "the result is " + std::to_string(compact.size()) + " bytes of JSON, above the " +
                     std::to_string(kMaxResultBytes) +
                     " allowed (kMaxResultBytes): record a summary, and put the data elsewhere");
  }
  return compact;
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

// What became of one message or timeout: the result label of kbus_workflow_steps_total.
enum StepResult : std::size_t {
  kStepApplied,       // the handler ran and the new state was written
  kStepUnchanged,     // the handler ran and changed nothing: nothing written
  kStepDuplicate,     // processed before (or a timeout already fired or cancelled)
  kStepLate,          // for a completed or failed instance
  kStepNotFound,      // for no instance
  kStepNoId,          // no workflow id: dead-lettered
  kStepRekeyed,       // forwarded into the input topic
  kStepExpired,       // a finished instance's retention ended: removed
  kStepRetried,       // not handled now (partition not ready, state not written, ...)
  kStepDeadLettered,  // does not decode, state too large
  kStepError,         // the handler threw: retried by the bus
  kStepResultCount,
  kStepUnset = kStepResultCount,
};
constexpr std::array<std::string_view, kStepResultCount> kStepResultNames = {
    "applied",  "unchanged", "duplicate", "late",          "not_found", "no_id",
    "rekeyed",  "expired",   "retried",   "dead_lettered", "error"};

// Instance statuses, as the status label of kbus_workflow_instances.
constexpr std::array<std::string_view, 3> kStatuses = {detail::kRunning, detail::kCompleted, detail::kFailed};
std::size_t StatusIndex(std::string_view status) {
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) return i;
  }
  return 0;
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
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
    // For the operations port: instances by status (kStatuses), their pending timeouts (not the
    // internal expiry), and why the load has not succeeded yet.
    std::array<std::int64_t, kStatuses.size()> by_status{};
    std::int64_t pending = 0;
    int load_attempts = 0;
    std::string load_error;
  };
  using PartitionPtr = std::shared_ptr<Partition>;

  Impl(const detail::Spec& s, HostConfig c, StateStore& st) : spec(s), config(std::move(c)), store(st) {
    if (config.group.empty()) throw std::invalid_argument("workflow host: the group is required (dead letters go to <group>.dlq)");
    if (!config.now_ms) config.now_ms = SystemNowMs;
    if (spec.name.empty()) throw std::invalid_argument("workflow: the name must not be empty");
    if (spec.schema < 1) throw std::invalid_argument("workflow " + spec.name + ": the schema must be >= 1");
    if (spec.options.result_retention.count() <= 0) {
      throw std::invalid_argument("workflow " + spec.name + ": result_retention must be positive (it is " +
                                  std::to_string(spec.options.result_retention.count()) + " ms)");
    }
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
  bool timer_started = false;              // under mu
  std::atomic<bool> timer_running{false};  // the timer thread is in its loop

  // The operations port's series (ReportTo), looked up once; null until then.
  struct Meters {
    // Per route: spec.steps in order, then the timeout messages.
    std::vector<std::array<metrics::Counter*, kStepResultCount>> steps;
    metrics::Histogram* write_seconds = nullptr;
    metrics::Counter* write_errors = nullptr;
    metrics::Histogram* load_seconds = nullptr;
    metrics::Counter* load_errors = nullptr;
    metrics::Counter* fired = nullptr;
    std::array<metrics::Counter*, 3> runs{};  // started, completed, failed
    std::array<metrics::Gauge*, kStatuses.size()> instances{};
    metrics::Gauge* pending = nullptr;
    metrics::Gauge* loading = nullptr;
    metrics::Gauge* ready = nullptr;
    metrics::CollectorHandle collector;
    health::ProbeHandle probe;
  };
  std::atomic<Meters*> meters{nullptr};
  std::unique_ptr<Meters> meters_owner;  // last: unregisters before the rest goes

  Meters* M() const { return meters.load(std::memory_order_acquire); }

  // An instance record entering (+1) or leaving (-1) a partition's counts. Under mu.
  static void Track(Partition& p, const Record& in, int sign) {
    p.by_status[StatusIndex(in.status)] += sign;
    for (const Timeout& t : in.timeouts) {
      if (t.name != detail::kExpireTimeout && t.name != detail::kResultExpireTimeout) p.pending += sign;
    }
  }

  // Runs one route's handling and counts what became of it.
  template <class F>
  Outcome Tallied(std::size_t route, F&& handle) {
    StepResult result = kStepUnset;
    try {
      Outcome outcome = handle(result);
      if (result == kStepUnset) {
        result = outcome.kind() == Outcome::Kind::kRetry        ? kStepRetried
                 : outcome.kind() == Outcome::Kind::kDeadLetter ? kStepDeadLettered
                                                               : kStepApplied;
      }
      if (Meters* m = M()) m->steps[route][result]->Inc();
      return outcome;
    } catch (...) {
      if (Meters* m = M()) m->steps[route][kStepError]->Inc();
      throw;
    }
  }

  void ReportTo(metrics::Registry& registry, health::Board& board) {
    if (meters_owner) throw std::logic_error("WorkflowHost::ReportTo called twice");
    auto m = std::make_unique<Meters>();
    const std::string& w = spec.name;
    auto& steps = registry.AddCounter(
        "kbus_workflow_steps_total",
        "Messages and timeouts a workflow host handled, by message type and what became of them.",
        {"workflow", "type", "result"});
    auto add_route = [&](const std::string& type) {
      std::array<metrics::Counter*, kStepResultCount> row{};
      for (std::size_t i = 0; i < kStepResultCount; ++i) row[i] = &steps.With({w, type, kStepResultNames[i]});
      m->steps.push_back(row);
    };
    for (const detail::Step& step : spec.steps) add_route(step.type);
    add_route(timeout_type);
    m->write_seconds = &registry
                            .AddHistogram("kbus_workflow_state_write_seconds",
                                          "State record writes, from the request to the store's acknowledgement.",
                                          {"workflow"}, metrics::DurationBuckets())
                            .With({w});
    m->write_errors = &registry
                           .AddCounter("kbus_workflow_state_write_errors_total",
                                       "State record writes that failed (the message is retried).", {"workflow"})
                           .With({w});
    m->load_seconds = &registry
                           .AddHistogram("kbus_workflow_state_load_seconds",
                                         "Loading one input partition's states on assignment, failed tries included.",
                                         {"workflow"}, metrics::DurationBuckets())
                           .With({w});
    m->load_errors = &registry
                          .AddCounter("kbus_workflow_state_load_errors_total",
                                      "Tries to load a partition's states that failed (tried again after 1 s).",
                                      {"workflow"})
                          .With({w});
    m->fired = &registry
                    .AddCounter("kbus_workflow_timeouts_fired_total",
                                "Timeout messages sent into the input topic (a re-fire counts again).", {"workflow"})
                    .With({w});
    auto& runs = registry.AddCounter("kbus_workflow_runs_total",
                                     "Workflow runs begun (started) and ended (completed, failed) here.",
                                     {"workflow", "result"});
    m->runs = {&runs.With({w, "started"}), &runs.With({w, "completed"}), &runs.With({w, "failed"})};
    auto& instances = registry.AddGauge(
        "kbus_workflow_instances",
        "Instances held in memory by status: those of the input partitions this host owns.",
        {"workflow", "status"});
    for (std::size_t i = 0; i < kStatuses.size(); ++i) m->instances[i] = &instances.With({w, kStatuses[i]});
    m->pending = &registry
                      .AddGauge("kbus_workflow_timeouts_pending",
                                "Timeouts requested and not yet run or cancelled, in the instances held here.",
                                {"workflow"})
                      .With({w});
    auto& owned = registry.AddGauge("kbus_workflow_partitions",
                                    "Input partitions owned, by whether their states are loaded.",
                                    {"workflow", "state"});
    m->loading = &owned.With({w, "loading"});
    m->ready = &owned.With({w, "ready"});
    m->collector = registry.OnCollect([this, meters_ptr = m.get()] {
      Meters* m = meters_ptr;
      std::array<std::int64_t, kStatuses.size()> by_status{};
      std::int64_t pending = 0, loading = 0, ready = 0;
      {
        std::lock_guard lock(mu);
        for (const auto& [n, p] : partitions) {
          for (std::size_t i = 0; i < by_status.size(); ++i) by_status[i] += p->by_status[i];
          pending += p->pending;
          ++(p->ready ? ready : loading);
        }
      }
      for (std::size_t i = 0; i < by_status.size(); ++i) m->instances[i]->Set(static_cast<double>(by_status[i]));
      m->pending->Set(static_cast<double>(pending));
      m->loading->Set(static_cast<double>(loading));
      m->ready->Set(static_cast<double>(ready));
    });
    m->probe = board.Add("workflow " + spec.name, [this] { return Probe(); });
    meters.store(m.get(), std::memory_order_release);
    meters_owner = std::move(m);
  }

  health::Report Probe() const {
    health::Report r;
    std::lock_guard lock(mu);
    std::int64_t ready = 0, running = 0, pending = 0, busy = 0;
    std::string loading, error;
    for (const auto& [n, p] : partitions) {
      busy += static_cast<std::int64_t>(p->busy.size());
      running += p->by_status[0];
      pending += p->pending;
      if (p->ready) {
        ++ready;
        continue;
      }
      loading += (loading.empty() ? "" : ", ") + std::to_string(n);
      if (!p->load_error.empty() && error.empty()) {
        error = "; partition " + std::to_string(n) + " failed " + std::to_string(p->load_attempts) +
                " time(s): " + p->load_error;
      }
    }
    if (timer_started && !timer_running.load() && !stopping) {
      r.live = false;
      r.reason = "the timer thread stopped";
    }
    if (stopping) {
      r.ready = false;
      r.reason = "the workflow host is stopped";
    } else if (!loading.empty()) {
      r.ready = false;
      if (r.reason.empty()) r.reason = "loading the state of input partitions " + loading + error;
    }
    r.active_work = busy;
    r.details = {{"partitions", static_cast<std::int64_t>(partitions.size())},
                 {"partitions_loaded", ready},
                 {"instances_running", running},
                 {"timeouts_pending", pending}};
    return r;
  }

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
    const auto began = std::chrono::steady_clock::now();
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
          Track(*p, in, +1);
        }
        if (Meters* m = M()) m->load_seconds->Observe(SecondsSince(began));
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
      if (Meters* m = M()) m->load_errors->Inc();
      std::unique_lock lock(mu);
      p->load_attempts = attempt;
      p->load_error = s.error().message();
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

  Outcome OnMessage(const detail::Step& step, const JsonValue& payload, Context& ctx, StepResult& result) {
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
      result = kStepNoId;
      return Outcome::DeadLetterFor(
          "workflow-id-missing", spec.name + ": " +
                                     (step.key ? "the key extractor gave an empty workflow id for " + step.type
                                               : "a " + step.type + " without a kbus-workflow-id header"));
    }
    const InboundRecord& record = ctx.record();
    if (record.topic != spec.options.input_topic || record.key != id) {
      result = kStepRekeyed;
      return Rekey(record, id, ctx);
    }
    return Process(record.partition, id, ctx, &step, &payload, nullptr, result);
  }

  Outcome OnTimeoutMessage(const JsonValue& payload, Context& ctx, StepResult& result) {
    auto tid = payload.Find("timeout_id");
    auto timeout_id = tid ? tid->AsString() : std::nullopt;
    const std::string id(ctx.envelope().workflow_id);
    if (!timeout_id || id.empty()) {
      return Outcome::DeadLetterFor("decode-error", "a workflow timeout message needs timeout_id and a workflow id");
    }
    const std::string t(*timeout_id);
    return Process(ctx.record().partition, id, ctx, nullptr, nullptr, &t, result);
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
                  const JsonValue* payload, const std::string* timeout_id, StepResult& result) {
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
      result = kStepDuplicate;
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
      if (!current) {
        result = kStepDuplicate;
        return Ack();  // removed meanwhile
      }
      auto t = std::find_if(current->timeouts.begin(), current->timeouts.end(),
                            [&](const Timeout& x) { return x.id == *timeout_id; });
      if (t == current->timeouts.end()) {
        Count([](HostStats& s) { ++s.duplicates; });
        result = kStepDuplicate;
        return Ack();  // fired already, or cancelled
      }
      fired = *t;
      if (fired->name == detail::kExpireTimeout) {
        result = kStepExpired;
        return Expire(p, *current, ctx);
      }
      auto fn = spec.timeouts.find(fired->name);
      if (fired->name == detail::kResultExpireTimeout) {
        // The result's retention ended before the record's: written without it.
      } else if (fn == spec.timeouts.end()) {
        Log(LogLevel::kError, "workflow timeout has no handler, dropped",
            {{"workflow", spec.name}, {"workflow_id", id}, {"timeout", fired->name}});
      } else {
        run = &fn->second;
      }
      next = *current;
      next.timeouts.erase(std::find_if(next.timeouts.begin(), next.timeouts.end(),
                                       [&](const Timeout& x) { return x.id == *timeout_id; }));
      if (fired->name == detail::kResultExpireTimeout) {
        next.result_json.clear();
        next.result_expires_ms = 0;
      }
    } else if (!current || current->finished()) {
      if (!step->starter) {
        if (current) {
          Count([](HostStats& s) { ++s.late; });
          result = kStepLate;
          Log(LogLevel::kInfo, "message for a finished workflow",
              {{"workflow", spec.name}, {"workflow_id", id}, {"status", current->status},
               {"type", step->type}, {"message_id", ctx.envelope().message_id}});
          return Ack();
        }
        result = kStepNotFound;
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
    // What a step sends is named after the message it handles (id = f(message id, position)),
    // so a handler that runs twice sends the same ids. A redriven copy keeps the id of the
    // message it copies, though, and a new run it starts would send the very ids its failed run
    // sent; their replies would carry the old replies' ids, which the instance remembers as
    // processed, and be dropped (a redriven DelegatedCommand waited for ever for its first
    // attempt). Named after the dedupe id, which includes the redrive, they are new.
    Envelope named = ctx.envelope();
    named.message_id = message_id;
    WorkflowContext wctx(id, named, now, next.run, next.timeouts, 0);
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
      result = kStepUnchanged;
      return Ack();
    }

    ++next.version;
    next.updated_ms = now;
    if (!message_id.empty()) next.Remember(message_id, spec.options.remembered_messages);
    next.last_message = message_id;
    next.outbox = std::move(wctx.outgoing());
    if (named.message_id != ctx.envelope().message_id) {
      // The cause is still the message itself, by its own id.
      for (OutgoingRecord& r : next.outbox) r.SetHeader(header::kCausationId, ctx.envelope().message_id);
    }
    next.timeouts = std::move(wctx.timeouts());
    std::uint64_t started = fresh ? 1 : 0, completed = 0, failed = 0;
    if (wctx.ending() != WorkflowContext::Ending::kNone) {
      const bool ok = wctx.ending() == WorkflowContext::Ending::kCompleted;
      next.status = ok ? detail::kCompleted : detail::kFailed;
      next.finished_ms = now;
      next.timeouts.clear();
      next.result_json.clear();
      next.result_expires_ms = 0;
      std::int64_t expire_ms = now + spec.options.completed_retention.count();
      if (ok && wctx.result_json()) {
        // Refused here, before anything is written: the instance stays as it was and the message
        // waits in the dead-letter topic until the handler is fixed (nothing lost).
        Result<std::string> compact = CompactResult(*wctx.result_json());
        if (!compact.ok()) {
          const bool invalid = compact.error().code() == ErrorCode::kDecode;
          return Outcome::DeadLetterFor(invalid ? "result-invalid" : "result-too-large",
                                        "workflow " + spec.name + ", instance '" + id +
                                            "': " + compact.error().message());
        }
        next.result_json = std::move(compact).value();
        // Saturated: a retention of "forever" (milliseconds::max()) must not wrap into the past.
        const std::int64_t retention = spec.options.result_retention.count();
        next.result_expires_ms =
            retention > std::numeric_limits<std::int64_t>::max() - now ? std::numeric_limits<std::int64_t>::max()
                                                                       : now + retention;
        if (next.result_expires_ms < expire_ms) {
          next.timeouts.push_back(Timeout{message_id + "#result-expire", std::string(detail::kResultExpireTimeout),
                                          "", next.result_expires_ms});
        }
        // The record outlives its result, never the other way round.
        expire_ms = std::max(expire_ms, next.result_expires_ms);
      }
      next.timeouts.push_back(Timeout{message_id + "#expire", std::string(detail::kExpireTimeout), "", expire_ms});
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
    const Written written{started, completed, failed, encoded.size(), std::chrono::steady_clock::now()};
    // A store the worker writes to (Kafka): the record goes with the step's result, and no
    // thread waits for the broker. The worker holds the instance's next message, and this
    // step's messages, until the record is acknowledged, so the instance in memory may run
    // ahead of the store only while nothing can act on it; when the write fails for good, the
    // verdict puts the stored version back.
    std::optional<OutgoingRecord> ahead = store.WriteAheadRecord(number, id, encoded);
    if (!ahead) {
      if (Status s = store.Write(number, id, encoded); !s.ok()) {
        if (Meters* m = M()) m->write_errors->Inc();
        return Retry(std::chrono::milliseconds(500), "the workflow state was not written: " + s.error().message());
      }
    }
    for (const OutgoingRecord& r : next.outbox) ctx.AddOutgoing(r);
    const std::uint64_t version = next.version;
    Install(*p, id, current, std::move(next));
    if (!ahead) {
      Stored(written);
      return Ack();
    }
    ctx.WriteAhead(std::move(*ahead));
    ctx.OnWriteAheadVerdict([this, p, id, version, previous = std::move(current), written](const Status& s) {
      if (s.ok()) {
        Stored(written);
      } else {
        RollBack(p, id, version, previous, s);
      }
    });
    return Ack();
  }

  // What a step wrote, counted once the store has it.
  struct Written {
    std::uint64_t started = 0, completed = 0, failed = 0;
    std::size_t bytes = 0;
    std::chrono::steady_clock::time_point began;
  };

  void Stored(const Written& w) {
    if (Meters* m = M()) {
      m->write_seconds->Observe(SecondsSince(w.began));
      if (w.started > 0) m->runs[0]->Inc();
      if (w.completed > 0) m->runs[1]->Inc();
      if (w.failed > 0) m->runs[2]->Inc();
    }
    std::lock_guard lock(mu);
    ++stats.state_writes;
    stats.state_bytes += w.bytes;
    stats.started += w.started;
    stats.completed += w.completed;
    stats.failed += w.failed;
  }

  // Makes `next` the instance in memory, in place of `current`, with its timers.
  void Install(Partition& p, const std::string& id, const std::optional<Record>& current, Record next) {
    {
      std::lock_guard lock(mu);
      if (current) {
        for (const Timeout& t : current->timeouts) {
          p.timers.erase(TimerKey{t.due_ms, id, t.id});
          const bool kept = std::any_of(next.timeouts.begin(), next.timeouts.end(),
                                        [&](const Timeout& n) { return n.id == t.id; });
          if (!kept) p.fired.erase({id, t.id});  // fired or cancelled: forget its firing
        }
      }
      for (const Timeout& t : next.timeouts) p.timers.insert(TimerKey{t.due_ms, id, t.id});
      if (auto held = p.instances.find(id); held != p.instances.end()) {
        Track(p, held->second, -1);
      } else {
        ++stats.instances;
      }
      Track(p, next, +1);
      p.instances.insert_or_assign(id, std::move(next));
    }
    timer_cv.notify_all();
  }

  // A step's state record was not stored (the worker gave up on it, or dropped the result): the
  // instance goes back to what the store holds, `previous`, unless something newer replaced it
  // meanwhile or the partition went away (its instances are reloaded by the next owner).
  void RollBack(const PartitionPtr& p, const std::string& id, std::uint64_t version,
                const std::optional<Record>& previous, const Status& why) {
    {
      std::lock_guard lock(mu);
      if (p->revoked) return;
      auto it = p->instances.find(id);
      if (it == p->instances.end() || it->second.version != version) return;
      for (const Timeout& t : it->second.timeouts) {
        p->timers.erase(TimerKey{t.due_ms, id, t.id});
        p->fired.erase({id, t.id});
      }
      Track(*p, it->second, -1);
      if (previous) {
        for (const Timeout& t : previous->timeouts) p->timers.insert(TimerKey{t.due_ms, id, t.id});
        Track(*p, *previous, +1);
        it->second = *previous;
      } else {
        p->instances.erase(it);
        --stats.instances;
      }
    }
    if (Meters* m = M()) m->write_errors->Inc();
    Log(LogLevel::kWarn, "workflow state not stored, the instance is back at its stored version",
        {{"workflow", spec.name}, {"workflow_id", id}, {"partition", p->number},
         {"stored_version", previous ? static_cast<std::int64_t>(previous->version) : 0},
         {"error", why.ok() ? std::string() : why.error().message()}});
    timer_cv.notify_all();
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
    if (auto held = p->instances.find(current.id); held != p->instances.end()) {
      Track(*p, held->second, -1);
      p->instances.erase(held);
      --stats.instances;
    }
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
    if (Meters* m = M(); m != nullptr && sent > 0) m->fired->Inc(static_cast<std::uint64_t>(sent));
    return sent;
  }

  void TimerLoop() {
    struct Running {  // set by Start()
      std::atomic<bool>& flag;
      ~Running() { flag.store(false); }
    } running{timer_running};
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
    return InstanceInfo{in.id,       in.status, in.run,         in.version,
                        in.schema,   in.state_json, in.timeouts, in.outbox,
                        in.result_json, in.result_expires_ms};
  }
};

WorkflowHost::WorkflowHost(const detail::Spec& spec, HostConfig config, StateStore& store)
    : impl_(std::make_unique<Impl>(spec, std::move(config), store)) {}

WorkflowHost::~WorkflowHost() { Stop(); }

void WorkflowHost::Register(HandlerRegistry& registry) {
  Impl* impl = impl_.get();
  for (std::size_t route = 0; route < impl->spec.steps.size(); ++route) {
    const detail::Step& step = impl->spec.steps[route];
    const detail::Step* s = &step;
    registry.AddRoute(HandlerRegistry::Route{
        step.type, step.kind, step.topic,
        [impl, s, route](const JsonValue& payload, Context& ctx) {
          return impl->Tallied(route, [&](StepResult& result) { return impl->OnMessage(*s, payload, ctx, result); });
        },
        impl->spec.options.policy});
    // Re-keyed copies arrive on the input topic: registered there too, they find this route even
    // when another workflow in the same registry handles the type on a topic of its own.
    if (step.topic != impl->spec.options.input_topic) {
      HandlerRegistry::Route copy = *registry.Find(step.type, step.topic);
      copy.topic = impl->spec.options.input_topic;
      copy.lanes.clear();
      registry.AddRoute(std::move(copy));
    }
  }
  registry.AddRoute(HandlerRegistry::Route{
      impl->timeout_type, MessageKind::kCommand, impl->spec.options.input_topic,
      [impl, route = impl->spec.steps.size()](const JsonValue& payload, Context& ctx) {
        return impl->Tallied(route, [&](StepResult& result) { return impl->OnTimeoutMessage(payload, ctx, result); });
      },
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
  impl_->timer_started = true;
  impl_->timer_running.store(true);
  impl_->timer = std::thread([impl = impl_.get()] { impl->TimerLoop(); });
}

void WorkflowHost::ReportTo(metrics::Registry& metrics, health::Board& health) { impl_->ReportTo(metrics, health); }

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
