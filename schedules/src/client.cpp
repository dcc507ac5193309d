#include "kbus/schedules/client.hpp"

#include <map>

#include "kbus/kafka/partition_reader.hpp"
#include "kbus/uuid.hpp"

namespace kbus::schedules {

namespace {

using std::chrono::milliseconds;

// Folds a schedule's records as its owner would: a snapshot replaces, a request waits until a
// snapshot lists it as applied, a tombstone deletes.
struct Folded {
  std::optional<ScheduleView> view;
  std::vector<Request> waiting;
  std::string rejected;
  std::deque<std::string> applied;
};

void Fold(Folded& f, const kafka::ReaderRecord& r) {
  if (!r.payload) {
    f = Folded{};
    return;
  }
  auto rec = DecodeRecord(*r.payload);
  if (!rec.ok()) return;
  if (rec->request) {
    f.waiting.push_back(std::move(*rec->request));
    return;
  }
  const ScheduleState state = rec->state.value_or(ScheduleState{});
  f.applied = state.applied;
  f.rejected = rec->rejected;
  std::erase_if(f.waiting, [&](const Request& q) {
    return std::find(state.applied.begin(), state.applied.end(), q.id) != state.applied.end();
  });
  if (rec->spec) {
    f.view = ScheduleView{std::move(*rec->spec), state, {}};
  } else {
    f.view.reset();
  }
}

}  // namespace

Result<std::string> SendRequest(kafka::Producer& producer, std::string_view schedule_id, Request request,
                                std::string_view topic) {
  if (request.op == Request::Op::kPut) {
    if (!request.spec) return Error(ErrorCode::kInvalidArgument, "a put needs a spec");
    if (Status s = Validate(*request.spec); !s.ok()) return s.error();
    schedule_id = request.spec->id;
  }
  if (request.op == Request::Op::kBackfill && request.from >= request.to) {
    return Error(ErrorCode::kInvalidArgument, "backfill: from must be before to");
  }
  if (schedule_id.empty()) return Error(ErrorCode::kInvalidArgument, "id: empty");
  if (request.id.empty()) request.id = NewUuid();
  const std::string id = request.id;
  OutgoingRecord out;
  out.topic = std::string(topic);
  out.key = std::string(schedule_id);
  out.payload = EncodeRecord({.request = std::move(request)});
  if (Status s = producer.SendSync(out); !s.ok()) return s.error();
  return id;
}

Status Declare(kafka::Producer& producer, const std::vector<ScheduleSpec>& specs, std::string_view topic) {
  for (const ScheduleSpec& spec : specs) {
    Request r;
    r.op = Request::Op::kPut;
    r.spec = spec;
    r.id = "declare/" + NameUuid(EncodeSpec(spec));
    auto sent = SendRequest(producer, spec.id, std::move(r), topic);
    if (!sent.ok()) return Error(sent.error().code(), "schedule '" + spec.id + "': " + sent.error().message());
  }
  return Ok();
}

Result<std::vector<ScheduleView>> ListSchedules(const kafka::ClientConfig& client, std::string_view topic,
                                                milliseconds timeout) {
  auto reader = kafka::PartitionReader::Open(client, {.topic = std::string(topic)});
  if (!reader.ok()) return reader.error();
  auto parts = (*reader)->Partitions(timeout);
  if (!parts.ok()) return parts.error();
  std::vector<kafka::PartitionSpan> spans;
  for (const auto& p : *parts) {
    if (p.high > p.low) spans.push_back({.partition = p.partition, .from = p.low, .to = p.high});
  }
  std::map<std::string, Folded> folded;
  if (!spans.empty()) {
    if (Status s = (*reader)->Assign(spans); !s.ok()) return s.error();
    if (Status s = (*reader)->ReadToEnd(timeout, [&](kafka::ReaderRecord&& r) {
          if (r.key && !r.key->empty()) Fold(folded[*r.key], r);
          return true;
        });
        !s.ok()) {
      return s.error();
    }
  }
  std::vector<ScheduleView> out;
  for (auto& [id, f] : folded) {
    if (!f.view) continue;
    f.view->waiting = std::move(f.waiting);
    out.push_back(std::move(*f.view));
  }
  return out;
}

Result<std::map<std::int32_t, std::int64_t>> EndOffsets(const kafka::ClientConfig& client, std::string_view topic) {
  auto reader = kafka::PartitionReader::Open(client, {.topic = std::string(topic)});
  if (!reader.ok()) return reader.error();
  auto parts = (*reader)->Partitions();
  if (!parts.ok()) return parts.error();
  std::map<std::int32_t, std::int64_t> out;
  for (const auto& p : *parts) out[p.partition] = p.high;
  return out;
}

Result<Answer> Await(const kafka::ClientConfig& client, std::string_view schedule_id, std::string_view request_id,
                     const std::map<std::int32_t, std::int64_t>& from, milliseconds timeout, std::string_view topic) {
  auto reader = kafka::PartitionReader::Open(client, {.topic = std::string(topic)});
  if (!reader.ok()) return reader.error();
  std::vector<kafka::PartitionSpan> spans;
  if (from.empty()) {
    auto parts = (*reader)->Partitions(timeout);
    if (!parts.ok()) return parts.error();
    for (const auto& p : *parts) spans.push_back({.partition = p.partition, .from = p.high});
  } else {
    for (const auto& [p, offset] : from) spans.push_back({.partition = p, .from = offset});
  }
  if (Status s = (*reader)->Assign(spans); !s.ok()) return s.error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto next = (*reader)->Next(milliseconds(200));
    if (!next.ok()) return next.error();
    if (!*next || (*next)->key != std::string(schedule_id)) continue;
    const kafka::ReaderRecord& r = **next;
    if (!r.payload) continue;  // a delete is answered by the record before its tombstone
    auto rec = DecodeRecord(*r.payload);
    if (!rec.ok() || rec->request || !rec->state) continue;
    const auto& applied = rec->state->applied;
    if (std::find(applied.begin(), applied.end(), request_id) == applied.end()) continue;
    Answer a;
    a.applied = rec->rejected.empty();
    a.refused = rec->rejected;
    if (rec->spec) a.schedule = ScheduleView{std::move(*rec->spec), std::move(*rec->state), {}};
    return a;
  }
  return Error(ErrorCode::kTimeout, "no scheduler answered within " + std::to_string(timeout.count()) +
                                        " ms; the request waits in '" + std::string(topic) +
                                        "' and is applied when a scheduler runs");
}

std::vector<TimePoint> NextFireTimes(const ScheduleSpec& spec, TimePoint after, std::size_t count) {
  std::vector<TimePoint> out;
  auto calendar = CalendarOf(spec);
  if (!calendar.ok()) return out;
  TimePoint t = after;
  if (spec.start && *spec.start - milliseconds(1) > t) t = *spec.start - milliseconds(1);
  while (out.size() < count) {
    auto next = calendar->Next(t);
    if (!next || (spec.end && *next > *spec.end)) break;
    out.push_back(*next + TickJitter(spec, *next));
    t = *next;
  }
  return out;
}

}  // namespace kbus::schedules
