#include "kbus/schedules/schedule.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>

#include "kbus/context.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/uuid.hpp"
#include "pending_index.hpp"

namespace kbus::schedules {

namespace {

using std::chrono::milliseconds;
constexpr std::string_view kRunPrefix = "schedule/";
constexpr std::string_view kLaunchProcess = MessageTraits<handlers::LaunchProcess>::kType;
constexpr std::string_view kProcessExited = MessageTraits<handlers::ProcessExited>::kType;
// At most this many ticks are looked at per evaluation (a 1 s schedule after a day down).
constexpr std::size_t kMaxTicksPerPass = 10000;
// A tick this late is still on time, whatever the catch-up window: the owner's loop and a
// takeover's first evaluation are not instant.
constexpr milliseconds kOnTimeSlack{2000};

std::int64_t Ms(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint FromMs(std::int64_t ms) { return TimePoint(milliseconds(ms)); }

std::string Iso(TimePoint t) {
  const auto secs = std::chrono::floor<std::chrono::seconds>(t);
  const auto day = std::chrono::floor<std::chrono::days>(secs);
  const std::chrono::year_month_day ymd(day);
  const std::chrono::hh_mm_ss hms(secs - day);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

void ReplaceAll(std::string& s, std::string_view from, std::string_view to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

std::vector<std::string> EndsOn(const ScheduleSpec& spec) {
  if (!spec.ends_on.empty()) return spec.ends_on;
  if (spec.type == kLaunchProcess) return {std::string(kProcessExited)};
  return {};
}

// The payload's top-level "job_id", when it is a string.
std::string JobIdOf(std::string_view payload) {
  rapidjson::Document d;
  d.Parse(payload.data(), payload.size());
  if (d.HasParseError() || !d.IsObject()) return {};
  auto it = d.FindMember("job_id");
  return it != d.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                     : std::string();
}

void Remember(ScheduleState& state, RunRecord r) {
  state.recent.push_back(std::move(r));
  while (state.recent.size() > kRecentRuns) state.recent.pop_front();
}

milliseconds JitterOf(const ScheduleSpec& spec, TimePoint tick) { return TickJitter(spec, tick); }

// Fires `tick`: the command to send and the run to remember.
void Fire(const ScheduleSpec& spec, ScheduleState& state, TimePoint tick, TimePoint now, std::string_view reason,
          Plan& plan) {
  OutgoingRecord r = TickCommand(spec, tick, reason);
  RunRecord run{tick, std::string(r.FindHeader(header::kId).value_or("")), "fired", now, JobIdOf(r.payload)};
  plan.sends.push_back(std::move(r));
  ++state.fired;
  if (!EndsOn(spec).empty()) state.running.push_back(run);
  Remember(state, std::move(run));
  plan.changed = true;
}

void Cancel(const ScheduleSpec& spec, ScheduleState& state, TimePoint now, Plan& plan) {
  for (RunRecord& run : state.running) {
    if (!run.job_id.empty()) {
      SendOptions options;
      options.key = run.job_id;
      options.correlation_id = RunCorrelation(spec.id, run.tick);
      OutgoingRecord c = BuildRecord(
          handlers::CancelProcess{run.job_id, "schedule " + spec.id + " (cancel_other): a newer tick fired", 0},
          std::move(options));
      c.SetHeader(header::kId, NameUuid("kbus.schedule.cancel/" + run.message_id));
      plan.sends.push_back(std::move(c));
    }
    Remember(state, {run.tick, run.message_id, "cancelled", now, run.job_id});
  }
  state.running.clear();
  plan.changed = true;
}

// A due tick, with the overlap policy applied.
void OnTick(const ScheduleSpec& spec, ScheduleState& state, TimePoint tick, TimePoint now, Plan& plan,
            std::string_view reason = "tick") {
  if (state.running.empty() || spec.overlap == Overlap::kAllowAll) {
    Fire(spec, state, tick, now, reason, plan);
    return;
  }
  switch (spec.overlap) {
    case Overlap::kSkip:
      Remember(state, {tick, "", "skipped", now, ""});
      break;
    case Overlap::kBufferOne:
      if (!state.buffered) {
        state.buffered = tick;
        Remember(state, {tick, "", "buffered", now, ""});
      } else {
        Remember(state, {tick, "", "skipped", now, ""});
      }
      break;
    case Overlap::kCancelOther:
      Cancel(spec, state, now, plan);
      Fire(spec, state, tick, now, reason, plan);
      return;
    case Overlap::kAllowAll:
      break;
  }
  plan.changed = true;
}

void EndRun(const ScheduleSpec& spec, ScheduleState& state, std::string_view message_id, std::string outcome,
            TimePoint now, Plan& plan) {
  auto it = std::find_if(state.running.begin(), state.running.end(),
                         [&](const RunRecord& r) { return r.message_id == message_id; });
  if (it == state.running.end()) return;
  Remember(state, {it->tick, it->message_id, std::move(outcome), now, it->job_id});
  state.running.erase(it);
  plan.changed = true;
  if (state.running.empty() && state.buffered) {
    const TimePoint tick = *state.buffered;
    state.buffered.reset();
    Fire(spec, state, tick, now, "buffered", plan);
  }
}

}  // namespace

std::string_view OverlapName(Overlap o) {
  switch (o) {
    case Overlap::kSkip: return "skip";
    case Overlap::kBufferOne: return "buffer_one";
    case Overlap::kAllowAll: return "allow_all";
    case Overlap::kCancelOther: return "cancel_other";
  }
  return "skip";
}

Result<Overlap> ParseOverlap(std::string_view name) {
  for (Overlap o : {Overlap::kSkip, Overlap::kBufferOne, Overlap::kAllowAll, Overlap::kCancelOther}) {
    if (OverlapName(o) == name) return o;
  }
  return Error(ErrorCode::kInvalidArgument,
               "overlap: '" + std::string(name) + "' is not one of skip, buffer_one, allow_all, cancel_other");
}

std::string_view CatchUpName(CatchUp c) { return c == CatchUp::kAll ? "all" : "latest"; }

Result<CatchUp> ParseCatchUp(std::string_view name) {
  if (name == "all") return CatchUp::kAll;
  if (name == "latest") return CatchUp::kLatest;
  return Error(ErrorCode::kInvalidArgument, "catch_up: '" + std::string(name) + "' is not one of all, latest");
}

Result<Calendar> CalendarOf(const ScheduleSpec& spec) {
  if (!spec.cron.empty() && spec.every > milliseconds(0)) {
    return Error(ErrorCode::kInvalidArgument, "cron and every: give one of them, not both");
  }
  if (!spec.cron.empty()) return Calendar::Cron(spec.cron, spec.time_zone);
  if (spec.every != milliseconds(0)) {
    return Calendar::Every(spec.every, spec.start.value_or(TimePoint{}));
  }
  return Error(ErrorCode::kInvalidArgument, "cron or every: a schedule needs one of them");
}

Status Validate(const ScheduleSpec& spec) {
  auto bad = [](std::string why) { return Error(ErrorCode::kInvalidArgument, std::move(why)); };
  if (spec.id.empty()) return bad("id: empty");
  if (spec.id.size() > 200 || !IsValidUtf8(spec.id) || spec.id.find('/') != std::string::npos) {
    return bad("id: at most 200 bytes of UTF-8 text, without '/'");
  }
  auto calendar = CalendarOf(spec);
  if (!calendar.ok()) return calendar.error();
  if (spec.jitter < milliseconds(0)) return bad("jitter: negative");
  if (spec.start && spec.end && *spec.end <= *spec.start) return bad("end: not after start");
  if (spec.type.empty()) return bad("type: the command's type is required");
  if (spec.topic.empty()) return bad("topic: the command's topic is required");
  if (Status s = ValidateJson(spec.payload); !s.ok()) return bad("payload: " + s.error().message());
  if (spec.catch_up_window < milliseconds(0)) return bad("catch_up_window: negative");
  if (spec.run_timeout <= milliseconds(0)) return bad("run_timeout: must be positive");
  if (spec.overlap == Overlap::kCancelOther && spec.type != kLaunchProcess) {
    return bad("overlap: cancel_other cancels launcher jobs (type kbus.LaunchProcess); '" + spec.type +
               "' has no cancel command");
  }
  if (spec.overlap != Overlap::kSkip && spec.overlap != Overlap::kAllowAll && EndsOn(spec).empty()) {
    return bad("overlap: " + std::string(OverlapName(spec.overlap)) +
               " needs to know when a run ends: give ends_on (the event types that end a run)");
  }
  return Ok();
}

milliseconds TickJitter(const ScheduleSpec& spec, TimePoint tick) {
  if (spec.jitter <= milliseconds(0)) return milliseconds(0);
  const auto h = detail::KeyHash(spec.id + "/" + std::to_string(Ms(tick)));
  return milliseconds(static_cast<std::int64_t>(h % static_cast<std::uint64_t>(spec.jitter.count())));
}

std::string RunCorrelation(std::string_view schedule_id, TimePoint tick) {
  return std::string(kRunPrefix) + std::string(schedule_id) + "/" + std::to_string(Ms(tick));
}

std::optional<RunRef> ParseRunCorrelation(std::string_view c) {
  if (!c.starts_with(kRunPrefix)) return std::nullopt;
  c.remove_prefix(kRunPrefix.size());
  const auto slash = c.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::int64_t ms = 0;
  const auto digits = c.substr(slash + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return RunRef{std::string(c.substr(0, slash)), FromMs(ms)};
}

OutgoingRecord TickCommand(const ScheduleSpec& spec, TimePoint tick, std::string_view reason) {
  const std::string id = NameUuid("kbus.schedule/" + spec.id + "/" + std::to_string(Ms(tick)));
  std::string payload = spec.payload;
  ReplaceAll(payload, "${schedule}", spec.id);
  ReplaceAll(payload, "${tick}", Iso(tick));
  ReplaceAll(payload, "${run}", id);
  SendOptions options;
  options.topic = spec.topic;
  options.key = spec.key;
  options.correlation_id = RunCorrelation(spec.id, tick);
  options.headers = spec.headers;
  options.headers.push_back({"kbus-schedule-id", spec.id});
  options.headers.push_back({"kbus-schedule-tick", Iso(tick)});
  options.headers.push_back({"kbus-schedule-reason", std::string(reason)});
  OutgoingRecord r = BuildRecord(spec.type, MessageKind::kCommand, spec.topic, std::move(payload), std::move(options),
                                 nullptr, 0);
  r.SetHeader(header::kId, id);
  return r;
}

Plan Evaluate(const ScheduleSpec& spec, const Calendar& calendar, ScheduleState& state, TimePoint now) {
  Plan plan;
  // Runs whose end never came.
  for (auto it = state.running.begin(); it != state.running.end();) {
    if (now - it->at >= spec.run_timeout) {
      Remember(state, {it->tick, it->message_id, "timed_out", now, it->job_id});
      it = state.running.erase(it);
      plan.changed = true;
    } else {
      ++it;
    }
  }
  if (state.running.empty() && state.buffered) {
    const TimePoint tick = *state.buffered;
    state.buffered.reset();
    Fire(spec, state, tick, now, "buffered", plan);
  }
  // Backfill: the ticks asked for, oldest first, under the overlap policy like any tick.
  while (!state.backfill.empty()) {
    const TimePoint tick = state.backfill.front();
    state.backfill.erase(state.backfill.begin());
    OnTick(spec, state, tick, now, plan, "backfill");
    plan.changed = true;
  }

  // A new schedule starts from now: it does not fire the ticks of the past.
  if (!state.last_tick) {
    state.last_tick = now;
    plan.changed = true;
  }
  TimePoint from = *state.last_tick;
  if (spec.start && *spec.start - milliseconds(1) > from) from = *spec.start - milliseconds(1);
  TimePoint until = now;
  if (spec.end && *spec.end < until) until = *spec.end;

  std::vector<TimePoint> due;
  for (TimePoint t : calendar.Between(from, until, kMaxTicksPerPass)) {
    if (t + JitterOf(spec, t) > now) break;  // not yet: later ticks wait behind it
    due.push_back(t);
  }
  if (!due.empty()) {
    state.last_tick = due.back();
    plan.changed = true;
    if (spec.paused) {
      for (TimePoint t : due) Remember(state, {t, "", "paused", now, ""});
    } else {
      // Ticks older than the window are missed; of the rest, all or the latest fire.
      std::vector<TimePoint> in_window;
      for (TimePoint t : due) {
        if (now - (t + JitterOf(spec, t)) > spec.catch_up_window + kOnTimeSlack) {
          Remember(state, {t, "", "missed", now, ""});
        } else {
          in_window.push_back(t);
        }
      }
      if (spec.catch_up == CatchUp::kLatest && in_window.size() > 1) {
        for (std::size_t i = 0; i + 1 < in_window.size(); ++i) Remember(state, {in_window[i], "", "skipped", now, ""});
        in_window.erase(in_window.begin(), in_window.end() - 1);
      }
      for (TimePoint t : in_window) OnTick(spec, state, t, now, plan);
    }
  }
  if (auto next = calendar.Next(*state.last_tick)) {
    if (!spec.end || *next <= *spec.end) plan.next_wake = *next + JitterOf(spec, *next);
  }
  for (const RunRecord& r : state.running) {
    const TimePoint t = r.at + spec.run_timeout;
    if (!plan.next_wake || t < *plan.next_wake) plan.next_wake = t;
  }
  return plan;
}

Plan Apply(ScheduleSpec& spec, const Calendar& calendar, ScheduleState& state, const Request& request, TimePoint now) {
  Plan plan;
  plan.changed = true;
  switch (request.op) {
    case Request::Op::kPut:
      // A put changes the definition, never a pause: code that declares its schedules at
      // each start must not resume one an operator paused.
      if (request.spec) {
        const bool paused = spec.paused;
        std::string note = spec.note;
        const bool existed = !spec.id.empty() && state.last_tick.has_value();
        spec = *request.spec;
        if (existed) {
          spec.paused = paused;
          spec.note = std::move(note);
        }
      }
      break;
    case Request::Op::kPause:
      spec.paused = true;
      spec.note = request.note;
      break;
    case Request::Op::kResume:
      spec.paused = false;
      spec.note.clear();
      // Ticks of the pause are not caught up: the schedule goes on from now.
      state.last_tick = now;
      break;
    case Request::Op::kTrigger:
      OnTick(spec, state, request.to, now, plan, "trigger");
      break;
    case Request::Op::kBackfill:
      for (TimePoint t : calendar.Between(request.from, request.to, kMaxBackfillTicks)) state.backfill.push_back(t);
      break;
    case Request::Op::kDelete:
      break;  // the owner writes the tombstone
    case Request::Op::kRunEnded: {
      auto ref = ParseRunCorrelation(request.run);
      const auto ends = EndsOn(spec);
      if (ref && std::find(ends.begin(), ends.end(), request.event_type) != ends.end()) {
        const std::string id = NameUuid("kbus.schedule/" + spec.id + "/" + std::to_string(Ms(ref->tick)));
        EndRun(spec, state, id, request.outcome.empty() ? "ended" : request.outcome, now, plan);
      }
      break;
    }
  }
  state.applied.push_back(request.id);
  while (state.applied.size() > kAppliedRequests) state.applied.pop_front();
  return plan;
}

// --- JSON ---

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void Str(Writer& w, std::string_view k, std::string_view v) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
void Int(Writer& w, std::string_view k, std::int64_t v) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
  w.Int64(v);
}

void WriteSpec(Writer& w, const ScheduleSpec& s) {
  w.StartObject();
  Str(w, "id", s.id);
  if (!s.cron.empty()) Str(w, "cron", s.cron);
  if (s.every.count() > 0) Int(w, "every_ms", s.every.count());
  Str(w, "time_zone", s.time_zone);
  if (s.jitter.count() > 0) Int(w, "jitter_ms", s.jitter.count());
  if (s.start) Int(w, "start_ms", Ms(*s.start));
  if (s.end) Int(w, "end_ms", Ms(*s.end));
  Str(w, "type", s.type);
  Str(w, "topic", s.topic);
  if (!s.key.empty()) Str(w, "key", s.key);
  Str(w, "payload", s.payload);
  if (!s.headers.empty()) {
    w.Key("headers");
    w.StartObject();
    for (const Header& h : s.headers) Str(w, h.name, h.value);
    w.EndObject();
  }
  Str(w, "overlap", OverlapName(s.overlap));
  Int(w, "catch_up_window_ms", s.catch_up_window.count());
  Str(w, "catch_up", CatchUpName(s.catch_up));
  if (!s.ends_on.empty()) {
    w.Key("ends_on");
    w.StartArray();
    for (const auto& t : s.ends_on) w.String(t.c_str(), static_cast<rapidjson::SizeType>(t.size()));
    w.EndArray();
  }
  Int(w, "run_timeout_ms", s.run_timeout.count());
  w.Key("paused");
  w.Bool(s.paused);
  if (!s.note.empty()) Str(w, "note", s.note);
  w.EndObject();
}

void WriteRun(Writer& w, const RunRecord& r) {
  w.StartObject();
  Int(w, "tick", Ms(r.tick));
  if (!r.message_id.empty()) Str(w, "id", r.message_id);
  Str(w, "outcome", r.outcome);
  Int(w, "at", Ms(r.at));
  if (!r.job_id.empty()) Str(w, "job_id", r.job_id);
  w.EndObject();
}

void WriteState(Writer& w, const ScheduleState& s) {
  w.StartObject();
  if (s.last_tick) Int(w, "last_tick", Ms(*s.last_tick));
  w.Key("running");
  w.StartArray();
  for (const auto& r : s.running) WriteRun(w, r);
  w.EndArray();
  if (s.buffered) Int(w, "buffered", Ms(*s.buffered));
  w.Key("recent");
  w.StartArray();
  for (const auto& r : s.recent) WriteRun(w, r);
  w.EndArray();
  w.Key("applied");
  w.StartArray();
  for (const auto& a : s.applied) w.String(a.c_str(), static_cast<rapidjson::SizeType>(a.size()));
  w.EndArray();
  w.Key("backfill");
  w.StartArray();
  for (TimePoint t : s.backfill) w.Int64(Ms(t));
  w.EndArray();
  Int(w, "fired", static_cast<std::int64_t>(s.fired));
  w.EndObject();
}

std::string_view OpName(Request::Op op) {
  switch (op) {
    case Request::Op::kPut: return "put";
    case Request::Op::kPause: return "pause";
    case Request::Op::kResume: return "resume";
    case Request::Op::kTrigger: return "trigger";
    case Request::Op::kBackfill: return "backfill";
    case Request::Op::kRunEnded: return "run_ended";
    case Request::Op::kDelete: return "delete";
  }
  return "put";
}

using Value = rapidjson::Value;

std::optional<std::string> GetStr(const Value& o, const char* k) {
  auto it = o.FindMember(k);
  if (it == o.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}
std::optional<std::int64_t> GetInt(const Value& o, const char* k) {
  auto it = o.FindMember(k);
  if (it == o.MemberEnd() || !it->value.IsInt64()) return std::nullopt;
  return it->value.GetInt64();
}

Result<ScheduleSpec> ReadSpec(const Value& o) {
  if (!o.IsObject()) return Error(ErrorCode::kInvalidArgument, "spec: not an object");
  ScheduleSpec s;
  s.id = GetStr(o, "id").value_or("");
  s.cron = GetStr(o, "cron").value_or("");
  s.every = milliseconds(GetInt(o, "every_ms").value_or(0));
  s.time_zone = GetStr(o, "time_zone").value_or("UTC");
  s.jitter = milliseconds(GetInt(o, "jitter_ms").value_or(0));
  if (auto v = GetInt(o, "start_ms")) s.start = FromMs(*v);
  if (auto v = GetInt(o, "end_ms")) s.end = FromMs(*v);
  s.type = GetStr(o, "type").value_or("");
  s.topic = GetStr(o, "topic").value_or("");
  s.key = GetStr(o, "key").value_or("");
  s.payload = GetStr(o, "payload").value_or("{}");
  if (auto it = o.FindMember("headers"); it != o.MemberEnd() && it->value.IsObject()) {
    for (auto& m : it->value.GetObject()) {
      if (m.value.IsString()) s.headers.push_back({m.name.GetString(), m.value.GetString()});
    }
  }
  if (auto v = GetStr(o, "overlap")) {
    auto p = ParseOverlap(*v);
    if (!p.ok()) return p.error();
    s.overlap = *p;
  }
  s.catch_up_window = milliseconds(GetInt(o, "catch_up_window_ms").value_or(60000));
  if (auto v = GetStr(o, "catch_up")) {
    auto p = ParseCatchUp(*v);
    if (!p.ok()) return p.error();
    s.catch_up = *p;
  }
  if (auto it = o.FindMember("ends_on"); it != o.MemberEnd() && it->value.IsArray()) {
    for (auto& t : it->value.GetArray()) {
      if (t.IsString()) s.ends_on.emplace_back(t.GetString(), t.GetStringLength());
    }
  }
  s.run_timeout = milliseconds(GetInt(o, "run_timeout_ms").value_or(3600000));
  if (auto it = o.FindMember("paused"); it != o.MemberEnd() && it->value.IsBool()) s.paused = it->value.GetBool();
  s.note = GetStr(o, "note").value_or("");
  return s;
}

RunRecord ReadRun(const Value& o) {
  RunRecord r;
  r.tick = FromMs(GetInt(o, "tick").value_or(0));
  r.message_id = GetStr(o, "id").value_or("");
  r.outcome = GetStr(o, "outcome").value_or("");
  r.at = FromMs(GetInt(o, "at").value_or(0));
  r.job_id = GetStr(o, "job_id").value_or("");
  return r;
}

ScheduleState ReadState(const Value& o) {
  ScheduleState s;
  if (!o.IsObject()) return s;
  if (auto v = GetInt(o, "last_tick")) s.last_tick = FromMs(*v);
  if (auto v = GetInt(o, "buffered")) s.buffered = FromMs(*v);
  if (auto it = o.FindMember("running"); it != o.MemberEnd() && it->value.IsArray()) {
    for (auto& r : it->value.GetArray()) s.running.push_back(ReadRun(r));
  }
  if (auto it = o.FindMember("recent"); it != o.MemberEnd() && it->value.IsArray()) {
    for (auto& r : it->value.GetArray()) s.recent.push_back(ReadRun(r));
  }
  if (auto it = o.FindMember("applied"); it != o.MemberEnd() && it->value.IsArray()) {
    for (auto& a : it->value.GetArray()) {
      if (a.IsString()) s.applied.emplace_back(a.GetString(), a.GetStringLength());
    }
  }
  if (auto it = o.FindMember("backfill"); it != o.MemberEnd() && it->value.IsArray()) {
    for (auto& t : it->value.GetArray()) {
      if (t.IsInt64()) s.backfill.push_back(FromMs(t.GetInt64()));
    }
  }
  s.fired = static_cast<std::uint64_t>(GetInt(o, "fired").value_or(0));
  return s;
}

}  // namespace

std::string EncodeSpec(const ScheduleSpec& spec) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  WriteSpec(w, spec);
  return std::string(buf.GetString(), buf.GetSize());
}

Result<ScheduleSpec> DecodeSpec(std::string_view json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError()) return Error(ErrorCode::kInvalidArgument, "spec: not JSON");
  return ReadSpec(d);
}

std::string EncodeRecord(const ScheduleRecord& record) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  if (record.spec) {
    w.Key("spec");
    WriteSpec(w, *record.spec);
  }
  if (record.state) {
    w.Key("state");
    WriteState(w, *record.state);
  }
  if (record.request) {
    const Request& r = *record.request;
    w.Key("request");
    w.StartObject();
    Str(w, "id", r.id);
    Str(w, "op", OpName(r.op));
    if (r.spec) {
      w.Key("spec");
      WriteSpec(w, *r.spec);
    }
    if (!r.note.empty()) Str(w, "note", r.note);
    if (r.op == Request::Op::kBackfill) Int(w, "from", Ms(r.from));
    if (r.op == Request::Op::kBackfill || r.op == Request::Op::kTrigger) Int(w, "to", Ms(r.to));
    if (!r.run.empty()) Str(w, "run", r.run);
    if (!r.outcome.empty()) Str(w, "outcome", r.outcome);
    if (!r.event_type.empty()) Str(w, "event_type", r.event_type);
    w.EndObject();
  }
  if (!record.rejected.empty()) Str(w, "rejected", record.rejected);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<ScheduleRecord> DecodeRecord(std::string_view json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject()) return Error(ErrorCode::kInvalidArgument, "schedule record: not a JSON object");
  ScheduleRecord out;
  if (auto it = d.FindMember("spec"); it != d.MemberEnd()) {
    auto s = ReadSpec(it->value);
    if (!s.ok()) return s.error();
    out.spec = std::move(*s);
  }
  if (auto it = d.FindMember("state"); it != d.MemberEnd()) out.state = ReadState(it->value);
  if (auto it = d.FindMember("request"); it != d.MemberEnd() && it->value.IsObject()) {
    const Value& o = it->value;
    Request r;
    r.id = GetStr(o, "id").value_or("");
    const std::string op = GetStr(o, "op").value_or("");
    bool known = false;
    for (auto k : {Request::Op::kPut, Request::Op::kPause, Request::Op::kResume, Request::Op::kTrigger,
                   Request::Op::kBackfill, Request::Op::kRunEnded, Request::Op::kDelete}) {
      if (OpName(k) == op) {
        r.op = k;
        known = true;
      }
    }
    if (!known) return Error(ErrorCode::kInvalidArgument, "request: unknown op '" + op + "'");
    if (auto s = o.FindMember("spec"); s != o.MemberEnd()) {
      auto spec = ReadSpec(s->value);
      if (!spec.ok()) return spec.error();
      r.spec = std::move(*spec);
    }
    r.note = GetStr(o, "note").value_or("");
    r.from = FromMs(GetInt(o, "from").value_or(0));
    r.to = FromMs(GetInt(o, "to").value_or(0));
    r.run = GetStr(o, "run").value_or("");
    r.outcome = GetStr(o, "outcome").value_or("");
    r.event_type = GetStr(o, "event_type").value_or("");
    out.request = std::move(r);
  }
  out.rejected = GetStr(d, "rejected").value_or("");
  return out;
}

}  // namespace kbus::schedules
