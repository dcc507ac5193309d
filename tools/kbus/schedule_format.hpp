#pragma once
// Times, durations and tables as `kbus schedules` and `kbus delayed` print them, and as their flags
// read them back (ParseTime, ParseDelay).

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

namespace kbus::cli {

// ISO 8601 in UTC: "2026-12-24T18:00:00Z", with ".250" when the milliseconds are not zero.
std::string FormatTime(std::chrono::sys_time<std::chrono::milliseconds> t);
// The largest unit that divides it: "500ms", "10s", "90m", "2d"; "0" for zero.
std::string FormatDuration(std::chrono::milliseconds d);
// Rows of text in columns two spaces apart; the last column is not padded.
void PrintTable(std::ostream& os, const std::vector<std::vector<std::string>>& rows);

}  // namespace kbus::cli
