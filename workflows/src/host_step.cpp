// One message or timeout through the host: finding its instance (re-keying it into the input
// topic first when needed), Process and its pieces, and the state write that ends a step.
// Runs on the worker's handler threads; see host_impl.hpp for the invariants it keeps.
//
// Process, in order:
//   Claim          the instance's busy mark, and a copy of the instance as it is
//   Dedupe         a message the instance processed already: re-send its outbox, or nothing
//   Choose...      what runs: a timeout's handler (ChooseTimeout), or the step's, starting a
//                  new run (BeginRun) or continuing one (ChooseMessage)
//   UpgradeState   a record of an older schema is brought to this program's
//   RunStep        runs the handler; an unchanged instance writes nothing
//   Finish, End    the next record: version, remembered ids, outbox, timeouts, and for an
//                  ending run its status, result and expiry timeouts
//   Write          encodes and writes it (or hands it to the worker), then installs it

#include <algorithm>
#include <limits>

#include "host_impl.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/log.hpp"

namespace kbus::workflows {

namespace {

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

}  // namespace

using detail::kStepDuplicate;
using detail::kStepExpired;
using detail::kStepLate;
using detail::kStepNoId;
using detail::kStepNotFound;
using detail::kStepRekeyed;
using detail::kStepUnchanged;

// ---- finding the instance --------------------------------------------------------------------

Outcome WorkflowHost::Impl::OnMessage(const detail::Step& step, const JsonValue& payload, Context& ctx,
                                      StepResult& result) {
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

Outcome WorkflowHost::Impl::OnTimeoutMessage(const JsonValue& payload, Context& ctx, StepResult& result) {
  Result<detail::TimeoutMessage> message = FromJsonValue<detail::TimeoutMessage>(payload);
  const std::string id(ctx.envelope().workflow_id);
  if (!message.ok() || id.empty()) {
    return Outcome::DeadLetterFor("decode-error", "a workflow timeout message needs timeout_id and a workflow id" +
                                                      (message.ok() ? std::string() : ": " + message.error().message()));
  }
  return Process(ctx.record().partition, id, ctx, nullptr, nullptr, &message->timeout_id, result);
}

// Forwards the message into the input topic, keyed by its workflow id, so that all of an
// instance's messages share one partition and run one at a time.
Outcome WorkflowHost::Impl::Rekey(const InboundRecord& record, const std::string& id, Context& ctx) {
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

Outcome WorkflowHost::Impl::NotFoundOutcome(const detail::Step& step, const std::string& id, Context& ctx,
                                            std::string_view why) {
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

// ---- Process ---------------------------------------------------------------------------------

WorkflowHost::Impl::BusyGuard::~BusyGuard() {
  std::lock_guard lock(impl->mu);
  p->busy.erase(id);
}

// A message (`step` and `payload`) or a timeout (`timeout_id`) of instance `id`, arrived on
// input partition `number`.
Outcome WorkflowHost::Impl::Process(std::int32_t number, const std::string& id, Context& ctx,
                                    const detail::Step* step, const JsonValue* payload,
                                    const std::string* timeout_id, StepResult& result) {
  PartitionPtr p = WaitReady(number, ctx);
  if (!p) return Retry(std::chrono::milliseconds(500), "input partition " + std::to_string(number) + " is not ready here");
  Turn t(p, number, id, ctx, step, payload, timeout_id);
  t.message_id = DedupeId(ctx);
  if (auto busy = Claim(t)) return *std::move(busy);
  BusyGuard guard{this, p, id};
  t.now = config.now_ms();

  if (auto done = Dedupe(t, result)) return *std::move(done);
  auto chosen = timeout_id != nullptr ? ChooseTimeout(t, result) : ChooseMessage(t, result);
  if (chosen) return *std::move(chosen);
  if (t.next.schema != spec.schema) {
    if (Status s = UpgradeState(t.next); !s.ok()) {
      return Retry(std::chrono::seconds(1), s.error().message());
    }
    t.upgraded = true;
  }
  return RunStep(t, result);
}

// Takes the instance's busy mark and copies the instance as it is now.
std::optional<Outcome> WorkflowHost::Impl::Claim(Turn& t) {
  std::lock_guard lock(mu);
  if (t.p->unconfirmed.contains(t.id)) {
    // An earlier delivery's state record is still on its way (that delivery was abandoned
    // after it handed the record over): wait for its verdict rather than act on a state the
    // store may never hold.
    return Retry(std::chrono::milliseconds(100), "workflow " + t.id + "'s last state write is not confirmed yet");
  }
  if (!t.p->busy.insert(t.id).second) {
    // Cannot happen with key ordering on the input topic; never run two at once anyway.
    return Retry(std::chrono::milliseconds(100), "workflow " + t.id + " is busy");
  }
  if (auto it = t.p->instances.find(t.id); it != t.p->instances.end()) t.current = it->second;
  return std::nullopt;
}

std::optional<Outcome> WorkflowHost::Impl::Dedupe(Turn& t, StepResult& result) {
  if (!t.current || t.message_id.empty() || !t.current->Processed(t.message_id)) return std::nullopt;
  Count([](HostStats& s) { ++s.duplicates; });
  result = kStepDuplicate;
  if (t.current->last_message == t.message_id) {
    // Its state was written, perhaps not its messages: send them again (same ids).
    for (const OutgoingRecord& r : t.current->outbox) t.ctx.AddOutgoing(r);
  }
  return Ack();
}

// A timeout fired: its handler runs on the instance without it (expiry removes the instance;
// a result's expiry drops the result).
std::optional<Outcome> WorkflowHost::Impl::ChooseTimeout(Turn& t, StepResult& result) {
  if (!t.current) {
    result = kStepDuplicate;
    return Ack();  // removed meanwhile
  }
  auto is_it = [&](const Timeout& x) { return x.id == *t.timeout_id; };
  auto held = std::find_if(t.current->timeouts.begin(), t.current->timeouts.end(), is_it);
  if (held == t.current->timeouts.end()) {
    Count([](HostStats& s) { ++s.duplicates; });
    result = kStepDuplicate;
    return Ack();  // fired already, or cancelled
  }
  t.fired = *held;
  if (t.fired->name == detail::kExpireTimeout) {
    result = kStepExpired;
    return Expire(t.p, *t.current, t.ctx);
  }
  auto fn = spec.timeouts.find(t.fired->name);
  if (t.fired->name == detail::kResultExpireTimeout) {
    // The result's retention ended before the record's: written without it.
  } else if (fn == spec.timeouts.end()) {
    Log(LogLevel::kError, "workflow timeout has no handler, dropped",
        {{"workflow", spec.name}, {"workflow_id", t.id}, {"timeout", t.fired->name}});
  } else {
    t.run = &fn->second;
  }
  t.next = *t.current;
  t.next.timeouts.erase(std::find_if(t.next.timeouts.begin(), t.next.timeouts.end(), is_it));
  if (t.fired->name == detail::kResultExpireTimeout) {
    t.next.result_json.clear();
    t.next.result_expires_ms = 0;
  }
  return std::nullopt;
}

// A message: its step continues a running instance, or a starter begins a new run (also after
// a finished one); any other message for no running instance is late or not found.
std::optional<Outcome> WorkflowHost::Impl::ChooseMessage(Turn& t, StepResult& result) {
  if (t.current && !t.current->finished()) {
    t.next = *t.current;
    t.run = &t.step->run;
    return std::nullopt;
  }
  if (!t.step->starter) {
    if (t.current) {
      Count([](HostStats& s) { ++s.late; });
      result = kStepLate;
      Log(LogLevel::kInfo, "message for a finished workflow",
          {{"workflow", spec.name}, {"workflow_id", t.id}, {"status", t.current->status},
           {"type", t.step->type}, {"message_id", t.ctx.envelope().message_id}});
      return Ack();
    }
    result = kStepNotFound;
    return NotFoundOutcome(*t.step, t.id, t.ctx, "it was never started, or has expired");
  }
  BeginRun(t);
  return std::nullopt;
}

// A new run's record: the next run number, the ids the instance remembers, and the message
// that started it (kept to dead-letter it if the run fails).
void WorkflowHost::Impl::BeginRun(Turn& t) {
  const std::optional<Record>& current = t.current;
  Record& next = t.next;
  t.fresh = true;
  next.workflow = spec.name;
  next.id = t.id;
  next.schema = spec.schema;
  next.run = current ? current->run + 1 : 1;
  next.version = current ? current->version : 0;
  next.created_ms = t.now;
  next.correlation_id = std::string(t.ctx.envelope().correlation_id);
  if (current) next.processed = current->processed;
  const InboundRecord& r = t.ctx.record();
  next.origin = detail::Origin{std::string(r.topic), r.partition, r.offset, r.timestamp_ms,
                               std::string(r.key), std::string(r.payload), CopyHeaders(r)};
  next.state_json = spec.initial_state();
  t.run = &t.step->run;
}

Outcome WorkflowHost::Impl::RunStep(Turn& t, StepResult& result) {
  const std::string before = t.next.state_json;
  // What a step sends is named after the message it handles (id = f(message id, position)),
  // so a handler that runs twice sends the same ids. A redriven copy keeps the id of the
  // message it copies, though, and a new run it starts would send the very ids its failed run
  // sent; their replies would carry the old replies' ids, which the instance remembers as
  // processed, and be dropped (a redriven DelegatedCommand waited for ever for its first
  // attempt). Named after the dedupe id, which includes the redrive, they are new.
  Envelope named = t.ctx.envelope();
  named.message_id = t.message_id;
  WorkflowContext wctx(t.id, named, t.now, t.next.run, t.next.timeouts, 0);
  if (t.run != nullptr) {
    // A handler's exception propagates: the bus retries the message, nothing was written.
    Status s = (*t.run)(t.payload, t.next.state_json, wctx, t.fired ? &*t.fired : nullptr);
    if (!s.ok()) {
      // The message or the stored state does not decode: no retry can fix it.
      return Outcome::DeadLetterFor("decode-error", s.error().message());
    }
  }
  Count([](HostStats& s) { ++s.handled; });

  const bool unchanged = !t.fresh && !t.upgraded && !t.fired && t.next.state_json == before &&
                         wctx.outgoing().empty() && !wctx.timeouts_changed() &&
                         wctx.ending() == WorkflowContext::Ending::kNone;
  if (unchanged) {
    Count([](HostStats& s) { ++s.unchanged; });
    result = kStepUnchanged;
    return Ack();
  }
  Written written;
  written.started = t.fresh ? 1 : 0;
  if (auto refused = Finish(t, wctx, written)) return *std::move(refused);
  return Write(t, written);
}

// The next record: what the handler asked for (wctx), and the message remembered.
std::optional<Outcome> WorkflowHost::Impl::Finish(Turn& t, WorkflowContext& wctx, Written& written) {
  Record& next = t.next;
  ++next.version;
  next.updated_ms = t.now;
  if (!t.message_id.empty()) next.Remember(t.message_id, spec.options.remembered_messages);
  next.last_message = t.message_id;
  next.outbox = std::move(wctx.outgoing());
  if (t.message_id != t.ctx.envelope().message_id) {
    // The cause is still the message itself, by its own id.
    for (OutgoingRecord& r : next.outbox) r.SetHeader(header::kCausationId, t.ctx.envelope().message_id);
  }
  next.timeouts = std::move(wctx.timeouts());
  if (wctx.ending() != WorkflowContext::Ending::kNone) return End(t, wctx, written);
  return std::nullopt;
}

// A run ends: its status, its result and when that stops being served, the timeouts that drop
// the result and remove the record, and for a failed run the dead letter of its origin.
std::optional<Outcome> WorkflowHost::Impl::End(Turn& t, WorkflowContext& wctx, Written& written) {
  Record& next = t.next;
  const std::int64_t now = t.now;
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
                                    "workflow " + spec.name + ", instance '" + t.id +
                                        "': " + compact.error().message());
    }
    next.result_json = std::move(compact).value();
    // Saturated: a retention of "forever" (milliseconds::max()) must not wrap into the past.
    const std::int64_t retention = spec.options.result_retention.count();
    next.result_expires_ms =
        retention > std::numeric_limits<std::int64_t>::max() - now ? std::numeric_limits<std::int64_t>::max()
                                                                   : now + retention;
    if (next.result_expires_ms < expire_ms) {
      next.timeouts.push_back(Timeout{t.message_id + "#result-expire", std::string(detail::kResultExpireTimeout),
                                      "", next.result_expires_ms});
    }
    // The record outlives its result, never the other way round.
    expire_ms = std::max(expire_ms, next.result_expires_ms);
  }
  next.timeouts.push_back(Timeout{t.message_id + "#expire", std::string(detail::kExpireTimeout), "", expire_ms});
  (ok ? written.completed : written.failed) = 1;
  if (wctx.dead_letter()) next.outbox.push_back(DeadLetterOf(next, *wctx.dead_letter()));
  return std::nullopt;
}

// ---- the state write -------------------------------------------------------------------------

// Writes the next record, queues the step's messages behind it, and installs it in memory.
Outcome WorkflowHost::Impl::Write(Turn& t, Written written) {
  std::string encoded = detail::Encode(t.next);
  if (encoded.size() > spec.options.max_state_bytes) {
    return Outcome::DeadLetterFor(
        "state-too-large", "the " + spec.name + " state record of '" + t.id + "' would be " +
                               std::to_string(encoded.size()) + " bytes, above max_state_bytes " +
                               std::to_string(spec.options.max_state_bytes));
  }
  {
    std::lock_guard lock(mu);
    if (t.p->revoked) return Retry(std::chrono::milliseconds(500), "input partition revoked meanwhile");
  }
  // An abandoned delivery (its visibility timeout passed) must not write: the worker may be
  // delivering the message again already.
  if (t.ctx.Cancelled()) return Retry(std::chrono::milliseconds(0), "the delivery was abandoned before its state write");
  written.bytes = encoded.size();
  written.began = std::chrono::steady_clock::now();
  // A store the worker writes to (Kafka): the record goes with the step's result, and no
  // thread waits for the broker. The worker holds the instance's next message, and this
  // step's messages, until the record is acknowledged, so the instance in memory may run
  // ahead of the store only while nothing can act on it; when the write fails for good, the
  // verdict puts the stored version back.
  std::optional<OutgoingRecord> ahead = store.WriteAheadRecord(t.number, t.id, encoded);
  if (!ahead) {
    if (Status s = store.Write(t.number, t.id, encoded); !s.ok()) {
      if (Meters* m = M()) m->write_errors->Inc();
      return Retry(std::chrono::milliseconds(500), "the workflow state was not written: " + s.error().message());
    }
  }
  for (const OutgoingRecord& r : t.next.outbox) t.ctx.AddOutgoing(r);
  const std::uint64_t version = t.next.version;
  Install(*t.p, t.id, t.current, std::move(t.next));
  if (!ahead) {
    Stored(written);
    return Ack();
  }
  {
    std::lock_guard lock(mu);
    t.p->unconfirmed.insert(t.id);
  }
  t.ctx.WriteAhead(std::move(*ahead));
  t.ctx.OnWriteAheadVerdict(
      [this, p = t.p, id = t.id, version, previous = std::move(t.current), written](const Status& s) {
        if (s.ok()) {
          {
            std::lock_guard lock(mu);
            p->unconfirmed.erase(id);
          }
          Stored(written);
        } else {
          RollBack(p, id, version, previous, s);
        }
      });
  return Ack();
}

void WorkflowHost::Impl::Stored(const Written& w) {
  if (Meters* m = M()) {
    m->write_seconds->Observe(detail::SecondsSince(w.began));
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

void WorkflowHost::Impl::Install(Partition& p, const std::string& id, const std::optional<Record>& current,
                                 Record next) {
  {
    std::lock_guard lock(mu);
    if (current) {
      for (const Timeout& t : current->timeouts) {
        p.timers.erase(detail::TimerKey{t.due_ms, id, t.id});
        const bool kept = std::any_of(next.timeouts.begin(), next.timeouts.end(),
                                      [&](const Timeout& n) { return n.id == t.id; });
        if (!kept) p.fired.erase({id, t.id});  // fired or cancelled: forget its firing
      }
    }
    for (const Timeout& t : next.timeouts) p.timers.insert(detail::TimerKey{t.due_ms, id, t.id});
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
void WorkflowHost::Impl::RollBack(const PartitionPtr& p, const std::string& id, std::uint64_t version,
                                  const std::optional<Record>& previous, const Status& why) {
  {
    std::lock_guard lock(mu);
    p->unconfirmed.erase(id);
    if (p->revoked) return;
    auto it = p->instances.find(id);
    if (it == p->instances.end() || it->second.version != version) return;
    for (const Timeout& t : it->second.timeouts) {
      p->timers.erase(detail::TimerKey{t.due_ms, id, t.id});
      p->fired.erase({id, t.id});
    }
    Track(*p, it->second, -1);
    if (previous) {
      for (const Timeout& t : previous->timeouts) p->timers.insert(detail::TimerKey{t.due_ms, id, t.id});
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

// ---- records ---------------------------------------------------------------------------------

Status WorkflowHost::Impl::UpgradeState(Record& in) const {
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

// The dead letter of a failed run: the message that started it, with the reason the handler gave.
OutgoingRecord WorkflowHost::Impl::DeadLetterOf(const Record& in, const WorkflowContext::DeadLetterRequest& req) const {
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

}  // namespace kbus::workflows
