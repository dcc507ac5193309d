#include "schedule_format.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace kbus::cli {

std::string FormatTime(std::chrono::sys_time<std::chrono::milliseconds> t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd(day);
  const hh_mm_ss hms(t - day);
  std::ostringstream os;
  os << std::setfill('0') << std::setw(4) << static_cast<int>(ymd.year()) << '-' << std::setw(2)
     << static_cast<unsigned>(ymd.month()) << '-' << std::setw(2) << static_cast<unsigned>(ymd.day()) << 'T'
     << std::setw(2) << hms.hours().count() << ':' << std::setw(2) << hms.minutes().count() << ':' << std::setw(2)
     << hms.seconds().count();
  if (hms.subseconds().count() != 0) os << '.' << std::setw(3) << hms.subseconds().count();
  os << 'Z';
  return os.str();
}

std::string FormatDuration(std::chrono::milliseconds d) {
  const long long ms = d.count();
  if (ms == 0) return "0";
  constexpr std::pair<long long, const char*> kUnits[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& [scale, unit] : kUnits) {
    if (ms % scale == 0) return std::to_string(ms / scale) + unit;
  }
  return std::to_string(ms) + "ms";
}

void PrintTable(std::ostream& os, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    os << line << '\n';
  }
}

}  // namespace kbus::cli
