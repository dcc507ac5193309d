#include "pending_index.hpp"

namespace kbus::schedules::detail {

std::uint64_t KeyHash(std::string_view key) {
  // FNV-1a, 64 bits: stable across runs and builds (std::hash is neither promised).
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void PendingIndex::Put(std::uint64_t key_hash, std::int64_t due_ms, std::int64_t offset) {
  live_[key_hash] = offset;
  by_due_.push({due_ms, offset, key_hash});
}

void PendingIndex::Erase(std::uint64_t key_hash) { live_.erase(key_hash); }

bool PendingIndex::Live(const Entry& entry) const {
  auto it = live_.find(entry.key_hash);
  return it != live_.end() && it->second == entry.offset;
}

void PendingIndex::DropStale() {
  while (!by_due_.empty() && !Live(by_due_.top())) by_due_.pop();
}

std::vector<PendingIndex::Entry> PendingIndex::TakeDue(std::int64_t until_ms, std::size_t max) {
  std::vector<Entry> out;
  for (DropStale(); out.size() < max && !by_due_.empty() && by_due_.top().due_ms <= until_ms; DropStale()) {
    out.push_back(by_due_.top());
    by_due_.pop();
  }
  return out;
}

std::optional<std::int64_t> PendingIndex::NextDue() {
  DropStale();
  if (by_due_.empty()) return std::nullopt;
  return by_due_.top().due_ms;
}

}  // namespace kbus::schedules::detail
