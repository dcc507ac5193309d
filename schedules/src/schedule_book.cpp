#include "schedule_book.hpp"

#include <algorithm>

#include "kbus/log.hpp"

namespace kbus::schedules {

namespace {

using std::chrono::milliseconds;

TimePoint At(std::int64_t ms) { return TimePoint(milliseconds(ms)); }

bool WasApplied(const ScheduleState& state, const std::string& id) {
  return std::find(state.applied.begin(), state.applied.end(), id) != state.applied.end();
}

}  // namespace

void ScheduleBook::Assign(std::int32_t partition) { partitions_[partition] = Partition{}; }
void ScheduleBook::Revoke(std::int32_t partition) { partitions_.erase(partition); }

void ScheduleBook::Loaded(std::int32_t partition) {
  auto it = partitions_.find(partition);
  if (it == partitions_.end() || it->second.live) return;
  it->second.live = true;
  Log(LogLevel::kInfo, "schedules loaded",
      {{"topic", config_.schedules_topic}, {"partition", partition}, {"schedules", it->second.schedules.size()}});
}

void ScheduleBook::Apply(std::int32_t partition, std::int64_t offset, RecordView view) {
  auto pit = partitions_.find(partition);
  if (pit == partitions_.end() || view.key.empty()) return;
  Partition& part = pit->second;
  if (!view.value) {
    part.schedules.erase(std::string(view.key));
    part.orphans.erase(std::string(view.key));
    return;
  }
  auto decoded = DecodeRecord(*view.value);
  if (!decoded.ok()) {
    Log(LogLevel::kWarn, "a record of the schedules topic is not a schedule; ignored",
        {{"topic", config_.schedules_topic}, {"partition", partition}, {"offset", offset},
         {"error", decoded.error().message()}});
    return;
  }
  const std::string key(view.key);
  if (decoded->request) {
    Request& r = *decoded->request;
    auto it = part.schedules.find(key);
    if (it != part.schedules.end()) {
      if (!WasApplied(it->second.state, r.id)) it->second.requests.push_back(std::move(r));
    } else {
      part.orphans[key].push_back(std::move(r));
    }
    return;
  }
  // A snapshot: the owner's own writes are already in memory; a loading partition takes them.
  if (part.live) return;
  ScheduleState state = decoded->state.value_or(ScheduleState{});
  auto drop_applied = [&](std::deque<Request>& q) {
    std::erase_if(q, [&](const Request& r) { return WasApplied(state, r.id); });
  };
  std::deque<Request> queued;
  if (auto it = part.schedules.find(key); it != part.schedules.end()) queued = std::move(it->second.requests);
  if (auto it = part.orphans.find(key); it != part.orphans.end()) {
    for (auto& r : it->second) queued.push_back(std::move(r));
    part.orphans.erase(it);
  }
  drop_applied(queued);
  if (!decoded->spec) {  // the answer to a refused request, for a schedule that does not exist
    part.schedules.erase(key);
    if (!queued.empty()) part.orphans[key] = std::move(queued);
    return;
  }
  Entry e;
  e.spec = std::move(*decoded->spec);
  if (auto c = CalendarOf(e.spec); c.ok()) e.calendar = std::move(*c);
  e.state = std::move(state);
  e.requests = std::move(queued);
  part.schedules[key] = std::move(e);
}

bool ScheduleBook::Commit(std::int32_t partition, const std::string& id, const Plan& plan, const Entry* entry,
                          const std::string& rejected, const std::deque<std::string>* applied) {
  for (const OutgoingRecord& r : plan.sends) {
    if (Status s = producer_.SendSync(r); !s.ok()) {
      Log(LogLevel::kWarn, "a schedule's command was not sent; trying again",
          {{"schedule", id}, {"topic", r.topic}, {"error", s.error().message()}});
      return false;
    }
  }
  ScheduleRecord record;
  if (entry) {
    record.spec = entry->spec;
    record.state = entry->state;
  } else {
    record.state = ScheduleState{};
    if (applied) record.state->applied = *applied;
  }
  record.rejected = rejected;
  OutgoingRecord out;
  out.topic = config_.schedules_topic;
  out.key = id;
  out.partition = partition;
  out.payload = EncodeRecord(record);
  if (Status s = producer_.SendSync(out); !s.ok()) {
    Log(LogLevel::kWarn, "a schedule's state was not written; trying again", {{"schedule", id}, {"error", s.error().message()}});
    return false;
  }
  for (const OutgoingRecord& r : plan.sends) {
    if (r.FindHeader("kbus-schedule-id")) ++fired_;
  }
  return true;
}

void ScheduleBook::Tick(std::int64_t now_ms) {
  for (auto& [partition, part] : partitions_) {
    if (part.live) Settle(partition, part, now_ms);
  }
}

void ScheduleBook::Settle(std::int32_t partition, Partition& part, std::int64_t now_ms) {
  const TimePoint now = At(now_ms);
  auto refusal = [&](const ScheduleSpec& spec, const std::string& key) -> std::string {
    if (spec.id != key) return "id: '" + spec.id + "' is not the record's key '" + key + "'";
    if (Status s = Validate(spec); !s.ok()) return s.error().message();
    if (!config_.known_types.empty() &&
        std::find(config_.known_types.begin(), config_.known_types.end(), spec.type) == config_.known_types.end()) {
      return "type: '" + spec.type + "' is not a command type this system knows";
    }
    return {};
  };

  // Requests for schedules that do not exist: a put creates one, anything else is refused.
  for (auto oit = part.orphans.begin(); oit != part.orphans.end();) {
    const std::string key = oit->first;
    std::deque<Request>& q = oit->second;
    while (!q.empty() && !part.schedules.count(key)) {
      Request r = q.front();
      std::string why = r.op != Request::Op::kPut || !r.spec ? "no schedule '" + key + "'" : refusal(*r.spec, key);
      if (!why.empty()) {
        std::deque<std::string> applied{r.id};
        if (!Commit(partition, key, {}, nullptr, why, &applied)) return;
        Log(LogLevel::kWarn, "schedule request refused", {{"schedule", key}, {"request", r.id}, {"error", why}});
        q.pop_front();
        continue;
      }
      Entry e;
      e.spec = *r.spec;
      e.calendar = *CalendarOf(e.spec);
      part.schedules[key] = std::move(e);
      // The put itself is applied with the schedule's other requests below.
    }
    if (auto sit = part.schedules.find(key); sit != part.schedules.end()) {
      for (auto& r : q) sit->second.requests.push_back(std::move(r));
      q.clear();
    }
    oit = q.empty() ? part.orphans.erase(oit) : std::next(oit);
  }

  for (auto it = part.schedules.begin(); it != part.schedules.end();) {
    const std::string id = it->first;
    Entry& e = it->second;
    bool erased = false;
    while (!e.requests.empty()) {
      const Request r = e.requests.front();
      if (r.op == Request::Op::kDelete) {
        // The answer first (no definition, the request applied), then the tombstone: whoever
        // waits for this request's answer sees it, and never mistakes another tombstone for it.
        std::deque<std::string> applied{r.id};
        if (!Commit(partition, id, {}, nullptr, {}, &applied)) return;
        OutgoingRecord tomb;
        tomb.topic = config_.schedules_topic;
        tomb.key = id;
        tomb.partition = partition;
        tomb.tombstone = true;
        if (!producer_.SendSync(tomb).ok()) return;
        Log(LogLevel::kInfo, "schedule deleted", {{"schedule", id}});
        it = part.schedules.erase(it);
        erased = true;
        break;
      }
      std::string why = r.op == Request::Op::kPut && r.spec ? refusal(*r.spec, id) : std::string();
      if (r.op == Request::Op::kBackfill && e.calendar &&
          e.calendar->Between(r.from, r.to, kMaxBackfillTicks + 1).size() > kMaxBackfillTicks) {
        why = "backfill: the range holds more than " + std::to_string(kMaxBackfillTicks) +
              " ticks; ask for it in parts";
      }
      const ScheduleSpec spec_before = e.spec;
      const ScheduleState state_before = e.state;
      Plan plan;
      if (why.empty()) {
        if (r.op == Request::Op::kPut) e.calendar = *CalendarOf(*r.spec);
        plan = schedules::Apply(e.spec, *e.calendar, e.state, r, now);
      } else {
        e.state.applied.push_back(r.id);
      }
      if (!Commit(partition, id, plan, &e, why, nullptr)) {
        e.spec = spec_before;
        e.state = state_before;
        e.calendar = *CalendarOf(e.spec);
        return;
      }
      if (!why.empty()) Log(LogLevel::kWarn, "schedule request refused", {{"schedule", id}, {"request", r.id}, {"error", why}});
      e.requests.pop_front();
      e.wake_ms.reset();
    }
    if (erased) continue;
    if (e.calendar && (!e.wake_ms || now_ms >= *e.wake_ms)) {
      const ScheduleState before = e.state;
      Plan plan = Evaluate(e.spec, *e.calendar, e.state, now);
      if ((plan.changed || !plan.sends.empty()) && !Commit(partition, id, plan, &e, {}, nullptr)) {
        e.state = before;
        ++it;
        continue;
      }
      e.wake_ms = plan.next_wake ? std::optional<std::int64_t>(plan.next_wake->time_since_epoch().count())
                                 : std::optional<std::int64_t>(now_ms + 60000);
    }
    ++it;
  }
}

ScheduleBook::Counts ScheduleBook::Stats() const {
  Counts c;
  for (const auto& [p, part] : partitions_) {
    ++c.partitions;
    if (!part.live) ++c.loading;
    c.schedules += part.schedules.size();
  }
  c.fired = fired_;
  return c;
}

}  // namespace kbus::schedules
