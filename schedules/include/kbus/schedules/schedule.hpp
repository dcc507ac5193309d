#pragma once
// Recurring schedules (docs/schedules.md): what a schedule is, what its owner remembers of it,
// and the decisions taken at each tick. No Kafka here: the Scheduler (scheduler.hpp) keeps
// schedules in the schedules topic and sends what these decisions ask for, and tests drive
// them with any clock.
//
// A schedule fires one command per tick. The command's id is derived from (schedule id, tick),
// and its correlation id is "schedule/<schedule id>/<tick in Unix ms>", so a tick fired twice
// (after a crash) carries the same ids, and the run's events say which schedule and tick they
// belong to. In the payload, "${schedule}", "${tick}" (ISO 8601 UTC) and "${run}" (the message
// id) are replaced, so that, say, each run of a launcher job gets its own job_id.

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/record.hpp"
#include "kbus/result.hpp"
#include "kbus/schedules/calendar.hpp"

namespace kbus::schedules {

// What happens to a tick while the schedule's previous run has not ended (Temporal's names).
enum class Overlap {
  kSkip,         // the tick is skipped (the default)
  kBufferOne,    // the first such tick waits and fires when the run ends; later ones are skipped
  kAllowAll,     // the tick fires anyway
  kCancelOther,  // the running runs are cancelled (CancelProcess), then the tick fires
};
// Which missed ticks fire after downtime, among those within the catch-up window.
enum class CatchUp {
  kAll,     // each of them, once, oldest first
  kLatest,  // only the latest
};

std::string_view OverlapName(Overlap o);  // "skip", "buffer_one", "allow_all", "cancel_other"
Result<Overlap> ParseOverlap(std::string_view name);
std::string_view CatchUpName(CatchUp c);  // "all", "latest"
Result<CatchUp> ParseCatchUp(std::string_view name);

struct ScheduleSpec {
  std::string id;  // the schedule's name, also its key in the schedules topic
  // Exactly one of the two: a 5-field cron expression read in `time_zone`, or a fixed interval.
  std::string cron;
  std::chrono::milliseconds every{0};
  std::string time_zone = "UTC";
  // Each tick fires at a delay in [0, jitter) derived from (id, tick): the same on every try.
  std::chrono::milliseconds jitter{0};
  std::optional<TimePoint> start;  // no tick before
  std::optional<TimePoint> end;    // no tick after

  // The command.
  std::string type;
  std::string topic;
  std::string key;             // default: the correlation id
  std::string payload = "{}";  // JSON, with ${schedule}, ${tick} and ${run} replaced
  std::vector<Header> headers;

  Overlap overlap = Overlap::kSkip;
  std::chrono::milliseconds catch_up_window{std::chrono::minutes(1)};
  CatchUp catch_up = CatchUp::kAll;
  // Event types that end a run (they carry the run's correlation id). Empty: a run ends when
  // its command is acknowledged, and `overlap` never applies. For kbus.LaunchProcess the
  // default is kbus.ProcessExited.
  std::vector<std::string> ends_on;
  // A run with no ending event this long after it fired counts as ended ("timed_out").
  std::chrono::milliseconds run_timeout{std::chrono::hours(1)};

  bool paused = false;
  std::string note;  // why it is paused, for people
};

// Checks a spec: the calendar, the zone, the times and the command. Errors name the field:
// "cron: field 2 (hour): 25 is out of range 0-23", "time_zone: unknown time zone 'Mars/Olympus'".
Status Validate(const ScheduleSpec& spec);
Result<Calendar> CalendarOf(const ScheduleSpec& spec);

// One run, or a tick that did not run, as `describe` shows it.
struct RunRecord {
  TimePoint tick;
  std::string message_id;  // empty when the tick did not fire
  // fired, skipped, buffered, missed (outside the catch-up window), paused, then when a run
  // ends: succeeded, failed, cancelled, timed_out, or the ending event's outcome.
  std::string outcome;
  TimePoint at;  // when this outcome was recorded
  std::string job_id;  // the payload's job_id, when it has one (cancel_other needs it)
};

// What the owner remembers of a schedule, besides its spec.
struct ScheduleState {
  std::optional<TimePoint> last_tick;  // the latest tick dealt with (fired, skipped, ...)
  std::vector<RunRecord> running;      // fired and not ended
  std::optional<TimePoint> buffered;   // buffer_one: the tick waiting for the run to end
  std::deque<RunRecord> recent;        // the last kRecentRuns outcomes, newest last
  std::deque<std::string> applied;     // ids of the last requests applied, so none applies twice
  std::vector<TimePoint> backfill;     // ticks asked for by backfill, not fired yet
  std::uint64_t fired = 0;
};
inline constexpr std::size_t kRecentRuns = 20;
// The most ticks one backfill request may ask for; the owner refuses a larger range.
inline constexpr std::size_t kMaxBackfillTicks = 10000;
inline constexpr std::size_t kAppliedRequests = 64;

// A change asked of a schedule's owner (by `kbus schedules` or by code), written to the
// schedules topic; the owner applies each once.
struct Request {
  enum class Op { kPut, kPause, kResume, kTrigger, kBackfill, kRunEnded, kDelete };
  std::string id;  // unique; the owner remembers the last kAppliedRequests
  Op op = Op::kPut;
  std::optional<ScheduleSpec> spec;  // kPut
  std::string note;                  // kPause
  TimePoint from, to;                // kBackfill: ticks in (from, to]; kTrigger: `to` is the time asked
  std::string run;                   // kRunEnded: the run's correlation id
  std::string outcome;               // kRunEnded
  std::string event_type;            // kRunEnded: the type of the event that ended it
};

// One record of the schedules topic. The owner writes snapshots (spec and state); anyone
// writes requests. A tombstone deletes the schedule.
struct ScheduleRecord {
  std::optional<ScheduleSpec> spec;
  std::optional<ScheduleState> state;
  std::optional<Request> request;
  std::string rejected;  // a snapshot answering a refused request: why (request id in state.applied)
};

std::string EncodeRecord(const ScheduleRecord& record);
Result<ScheduleRecord> DecodeRecord(std::string_view json);
std::string EncodeSpec(const ScheduleSpec& spec);  // for `describe`
Result<ScheduleSpec> DecodeSpec(std::string_view json);

// The correlation id of a tick's run, and back.
std::string RunCorrelation(std::string_view schedule_id, TimePoint tick);
struct RunRef {
  std::string schedule_id;
  TimePoint tick;
};
std::optional<RunRef> ParseRunCorrelation(std::string_view correlation_id);

// What a schedule's owner does at `now`: the commands to send (each tick's command, cancels),
// and whether the state changed. `Plan` changes `state`; the caller sends the records, waits
// for their acknowledgement, then writes the new snapshot.
struct Plan {
  std::vector<OutgoingRecord> sends;
  bool changed = false;
  std::optional<TimePoint> next_wake;  // when to look again
};
Plan Evaluate(const ScheduleSpec& spec, const Calendar& calendar, ScheduleState& state, TimePoint now);

// Applies a request to a schedule (spec may be replaced, state changed); `now` stamps records.
// Returns the sends it asks for (a trigger fires at once; a run's end may fire a buffered tick).
Plan Apply(ScheduleSpec& spec, const Calendar& calendar, ScheduleState& state, const Request& request, TimePoint now);

// How long after `tick` it fires: in [0, spec.jitter), the same for the same (id, tick).
std::chrono::milliseconds TickJitter(const ScheduleSpec& spec, TimePoint tick);

// The command of a tick, as Evaluate sends it (for tests and `describe`).
OutgoingRecord TickCommand(const ScheduleSpec& spec, TimePoint tick, std::string_view reason);

}  // namespace kbus::schedules
