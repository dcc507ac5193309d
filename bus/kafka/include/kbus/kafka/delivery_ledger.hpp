#pragma once
// DeliveryLedger: how many times each unfinished record of a partition was delivered, kept in
// the metadata of the partition's committed offset, so that the counts survive a crash of the
// worker that made them. Written before a handler runs (a lease), read by the next owner.
//
// Wire format (ASCII, at most kMaxLedgerBytes; offsets relative to the committed offset W):
//   v1;s=D;a=0:2,1-499:1
//   s: D (dirty: deliveries may be running) or C (clean: written at a revocation or shutdown)
//   a: offset delta (or range of deltas) : deliveries counted
// Real Kafka refuses commit metadata over 4096 bytes (offset.metadata.max.bytes).

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <span>
#include <string_view>
#include <utility>

#include "kbus/result.hpp"

namespace kbus::kafka {

inline constexpr std::size_t kMaxLedgerBytes = 3072;  // 75 % of Kafka's default limit

struct DeliveryLedger {
  bool clean = true;
  std::map<std::int64_t, int> deliveries;  // absolute offset -> deliveries counted (> 0)

  // Writes the entries at or after `base` (the committed offset), ranges merged, lowest offsets
  // first, and stops before the text would pass `max_bytes`. `*covered_until` (when given)
  // receives the highest offset whose count was written, base - 1 when none was. Returns an
  // empty string for a clean ledger without entries, so that idle commits carry no metadata.
  std::string Encode(std::int64_t base, std::size_t max_bytes = kMaxLedgerBytes,
                     std::int64_t* covered_until = nullptr) const;

  // Encode for counts already sorted by offset (no allocation per entry): what a worker holds
  // in offset order anyway.
  static std::string EncodeSorted(bool clean, std::span<const std::pair<std::int64_t, int>> sorted,
                                  std::int64_t base, std::size_t max_bytes = kMaxLedgerBytes,
                                  std::int64_t* covered_until = nullptr);

  // Reads what Encode wrote, relative to `base`. Empty text is a clean, empty ledger. An unknown
  // version or malformed text is an error that says so (the caller decides how loudly to fail).
  static Result<DeliveryLedger> Decode(std::string_view text, std::int64_t base);
};

}  // namespace kbus::kafka
