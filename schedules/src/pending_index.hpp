#pragma once
// PendingIndex: the delayed messages waiting in one partition of the pending topic, in as few
// bytes as possible: for each message its due time and offset, keyed by a 64-bit hash of its id
// (its Kafka key). The records themselves stay in Kafka; the scheduler reads a message back
// shortly before it falls due (Scheduler's prefetch), so memory grows by a few dozen bytes per
// waiting message, whatever the payload size.
//
// Thread safety: none; the scheduler's loop thread owns it.

#include <cstdint>
#include <optional>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kbus::schedules::detail {

std::uint64_t KeyHash(std::string_view key);

class PendingIndex {
 public:
  struct Entry {
    std::int64_t due_ms = 0;
    std::int64_t offset = 0;
    std::uint64_t key_hash = 0;
  };

  // A pending record at `offset`: the latest record of a key supersedes earlier ones.
  void Put(std::uint64_t key_hash, std::int64_t due_ms, std::int64_t offset);
  // A tombstone: the message was delivered or cancelled.
  void Erase(std::uint64_t key_hash);
  // True while `entry` is its key's live record (not superseded, delivered nor cancelled).
  bool Live(const Entry& entry) const;

  // Takes out the live entries due at or before `until_ms`, soonest first, at most `max`.
  std::vector<Entry> TakeDue(std::int64_t until_ms, std::size_t max);
  // The soonest due time of a live entry.
  std::optional<std::int64_t> NextDue();

  std::size_t size() const { return live_.size(); }

 private:
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const { return a.due_ms > b.due_ms; }
  };
  void DropStale();

  std::unordered_map<std::uint64_t, std::int64_t> live_;  // key hash -> offset of its live record
  // Every entry put, soonest first; superseded and erased ones are dropped when they reach the top.
  std::priority_queue<Entry, std::vector<Entry>, Later> by_due_;
};

}  // namespace kbus::schedules::detail
