#pragma once
// The quickstart's schedule: the nightly report (docs/schedules.md).

#include <chrono>
#include <string>

#include "kbus/schedules/schedule.hpp"
#include "messages.hpp"

namespace shop {

// [schedule]
// Every night at 02:00 in Paris, one SendDailyReport, however many schedulers run. Declared at
// each start of the worker: the definition is applied once, a pause an operator set is kept.
inline kbus::schedules::ScheduleSpec NightlyReport() {
  kbus::schedules::ScheduleSpec s;
  s.id = "shop-daily-report";
  s.cron = "0 2 * * *";
  s.time_zone = "Europe/Paris";
  s.type = std::string(kbus::MessageTraits<SendDailyReport>::kType);
  s.topic = std::string(kbus::MessageTraits<SendDailyReport>::kTopic);
  s.payload = R"({"day":"${tick}"})";
  s.catch_up_window = std::chrono::hours(6);  // a scheduler down at 02:00 still sends it by 08:00
  return s;
}
// [schedule]

}  // namespace shop
