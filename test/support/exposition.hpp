#pragma once
// Reading a /metrics page (the Prometheus text format) in tests.

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace kbus::test {

// The value of the series `series`, written as the page writes it ("name{a=\"x\",b=\"y\"}" or
// a bare name), if the page has it.
inline std::optional<double> SampleValue(std::string_view text, std::string_view series) {
  for (std::size_t at = 0; at < text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    if (line.size() > series.size() && line.substr(0, series.size()) == series && line[series.size()] == ' ') {
      return std::strtod(std::string(line.substr(series.size() + 1)).c_str(), nullptr);
    }
    at = end + 1;
  }
  return std::nullopt;
}

}  // namespace kbus::test
