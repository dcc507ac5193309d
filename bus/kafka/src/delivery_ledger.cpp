#include "kbus/kafka/delivery_ledger.hpp"

#include <charconv>
#include <vector>

namespace kbus::kafka {

std::string DeliveryLedger::Encode(std::int64_t base, std::size_t max_bytes,
                                   std::int64_t* covered_until) const {
  std::vector<std::pair<std::int64_t, int>> sorted(deliveries.lower_bound(base), deliveries.end());
  return EncodeSorted(clean, sorted, base, max_bytes, covered_until);
}

std::string DeliveryLedger::EncodeSorted(bool clean, std::span<const std::pair<std::int64_t, int>> sorted,
                                         std::int64_t base, std::size_t max_bytes,
                                         std::int64_t* covered_until) {
  constexpr std::size_t kHeaderBytes = 9;  // "v1;s=D;a="
  std::string runs;
  std::int64_t covered = base - 1;
  std::size_t i = 0;
  while (i < sorted.size() && sorted[i].first < base) ++i;
  // Consecutive offsets with the same count become one range: a wave of fresh records is one.
  std::string run;
  auto append_number = [&run](std::int64_t v) {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, v);
    run.append(digits, r.ptr);
  };
  while (i < sorted.size()) {
    const std::int64_t first = sorted[i].first;
    const int count = sorted[i].second;
    std::int64_t last = first;
    std::size_t next = i + 1;
    while (next < sorted.size() && sorted[next].first == last + 1 && sorted[next].second == count) {
      last = sorted[next].first;
      ++next;
    }
    run.clear();
    if (!runs.empty()) run += ',';
    append_number(first - base);
    if (last != first) {
      run += '-';
      append_number(last - base);
    }
    run += ':';
    append_number(count);
    const std::size_t size = run.size();
    if (kHeaderBytes + runs.size() + size > max_bytes) break;  // the rest goes unrecorded
    runs += run;
    covered = last;
    i = next;
  }
  if (covered_until != nullptr) *covered_until = covered;
  if (clean && runs.empty()) return {};
  return std::string("v1;s=") + (clean ? "C" : "D") + ";a=" + runs;
}

namespace {
template <class I>
bool ParseInt(std::string_view text, I& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}
Error Malformed(std::string_view text, std::string_view what) {
  return Error(ErrorCode::kDecode, "delivery ledger '" + std::string(text.substr(0, 80)) + "': " +
                                       std::string(what));
}
}  // namespace

Result<DeliveryLedger> DeliveryLedger::Decode(std::string_view text, std::int64_t base) {
  DeliveryLedger ledger;
  if (text.empty()) return ledger;
  if (text.substr(0, 3) != "v1;") return Malformed(text, "unknown version (this kbus reads v1)");
  std::string_view rest = text.substr(3);
  if (rest.substr(0, 2) != "s=" || rest.size() < 3 || (rest[2] != 'C' && rest[2] != 'D')) {
    return Malformed(text, "expected s=C or s=D");
  }
  ledger.clean = rest[2] == 'C';
  rest.remove_prefix(3);
  if (rest.substr(0, 3) != ";a=") return Malformed(text, "expected ;a=");
  rest.remove_prefix(3);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view run = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto colon = run.find(':');
    if (colon == std::string_view::npos) return Malformed(text, "a run without ':'");
    const std::string_view range = run.substr(0, colon);
    const auto dash = range.find('-');
    std::int64_t first = 0;
    std::int64_t last = 0;
    int count = 0;
    if (!ParseInt(range.substr(0, dash), first) ||
        (dash != std::string_view::npos && !ParseInt(range.substr(dash + 1), last)) ||
        !ParseInt(run.substr(colon + 1), count) || first < 0 || count < 1) {
      return Malformed(text, "a run is not DELTA[-DELTA]:COUNT");
    }
    if (dash == std::string_view::npos) last = first;
    if (last < first || last - first > 1'000'000) return Malformed(text, "a range is reversed or huge");
    for (std::int64_t d = first; d <= last; ++d) ledger.deliveries[base + d] = count;
  }
  return ledger;
}

}  // namespace kbus::kafka
