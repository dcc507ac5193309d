#pragma once
// Creating, changing and reading schedules from code or a CLI (docs/schedules.md). Changes are
// requests written to the schedules topic; the schedule's owner (a Scheduler) applies each once
// and answers with the schedule's new snapshot, which Await waits for.
//
//   kafka::Producer producer(...);
//   ScheduleSpec nightly{.id = "nightly-report", .cron = "0 2 * * *", .time_zone = "Europe/Paris",
//                        .type = "reports.Render", .topic = "reports", .payload = R"({"day":"${tick}"})"};
//   Declare(producer, {nightly});          // at every start: creates or updates, keeps a pause
//
// Thread safety: the functions may be called from any thread.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/result.hpp"
#include "kbus/schedules/schedule.hpp"
#include "kbus/schedules/scheduler.hpp"

namespace kbus::schedules {

// Sends a request for `request.spec->id` or `schedule_id`; returns the request's id (a new one
// unless `request.id` is set). The spec of a put is validated first (errors name the field).
Result<std::string> SendRequest(kafka::Producer& producer, std::string_view schedule_id, Request request,
                                std::string_view topic = kDefaultSchedulesTopic);

// Puts each schedule, with a request id derived from its definition: declaring the same
// schedules at each start applies each definition once. A put keeps an existing schedule's
// pause and its history.
Status Declare(kafka::Producer& producer, const std::vector<ScheduleSpec>& specs,
               std::string_view topic = kDefaultSchedulesTopic);

// A schedule as its owner last wrote it.
struct ScheduleView {
  ScheduleSpec spec;
  ScheduleState state;
  std::vector<Request> waiting;  // requests written after it, not applied yet
};

// Every schedule of the topic (read to its end), by id. kNotFound when the topic does not exist.
Result<std::vector<ScheduleView>> ListSchedules(const kafka::ClientConfig& client,
                                                std::string_view topic = kDefaultSchedulesTopic,
                                                std::chrono::milliseconds timeout = std::chrono::seconds(30));

// What the owner answered to a request.
struct Answer {
  bool applied = false;   // false: refused, see `refused`
  std::string refused;    // why, naming the field
  std::optional<ScheduleView> schedule;  // the schedule after it (nullopt once deleted)
};

// Reads the schedules topic from the offsets `from` (Watermarks before the request was sent;
// empty: from the end now) until the owner's answer to `request_id` for `schedule_id` arrives.
// kTimeout when no owner answered in time (no scheduler running: the request waits in the
// topic and is applied when one starts).
Result<Answer> Await(const kafka::ClientConfig& client, std::string_view schedule_id, std::string_view request_id,
                     const std::map<std::int32_t, std::int64_t>& from, std::chrono::milliseconds timeout,
                     std::string_view topic = kDefaultSchedulesTopic);
// The end of each partition now, to pass to Await after sending.
Result<std::map<std::int32_t, std::int64_t>> EndOffsets(const kafka::ClientConfig& client,
                                                        std::string_view topic = kDefaultSchedulesTopic);

// The next `count` fire times after `after`, jitter included.
std::vector<TimePoint> NextFireTimes(const ScheduleSpec& spec, TimePoint after, std::size_t count);

}  // namespace kbus::schedules
