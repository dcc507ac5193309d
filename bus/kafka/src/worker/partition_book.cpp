#include "partition_book.hpp"

#include <algorithm>
#include <iterator>

#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"

namespace kbus::kafka::worker {

PartitionBook::PartitionBook(Ordering ordering, std::size_t max_buffered)
    : ordering_(ordering), max_buffered_(max_buffered) {}

// ---- assignment -------------------------------------------------------------------------------

Partition& PartitionBook::Add(const std::string& topic, std::int32_t partition, bool tier, Clock::time_point now) {
  Partition p(&pool_);
  p.topic = topic;
  p.partition = partition;
  p.tier = tier;
  p.epoch = next_epoch_++;
  p.moved = now;
  if (auto old = partitions_.find(TpView(topic, partition)); old != partitions_.end()) {
    live_.erase(old->second.epoch);
  }
  revoked_flags_.push_back(p.revoked);
  auto [it, inserted] = partitions_.insert_or_assign(TpKey(topic, partition), std::move(p));
  live_[it->second.epoch] = &it->second;
  last_ = nullptr;
  last_rkt_ = nullptr;
  return it->second;
}

void PartitionBook::Remove(std::string_view topic, std::int32_t partition) {
  auto it = partitions_.find(TpView(topic, partition));
  if (it == partitions_.end()) return;
  live_.erase(it->second.epoch);
  partitions_.erase(it);
  last_ = nullptr;
  last_rkt_ = nullptr;
}

Partition* PartitionBook::Find(std::string_view topic, std::int32_t partition) {
  auto it = partitions_.find(TpView(topic, partition));
  return it == partitions_.end() ? nullptr : &it->second;
}

Partition* PartitionBook::Find(const rd_kafka_message_t& m) {
  if (last_ != nullptr && m.rkt == last_rkt_ && m.partition == last_partition_) return last_;
  Partition* p = Find(rd_kafka_topic_name(m.rkt), m.partition);
  if (p == nullptr) return nullptr;
  last_rkt_ = m.rkt;
  last_partition_ = m.partition;
  last_ = p;
  return p;
}

Partition* PartitionBook::Live(std::uint64_t epoch) {
  auto it = live_.find(epoch);
  return it == live_.end() ? nullptr : it->second;
}

Entry* PartitionBook::FindEntry(Partition& p, std::int64_t offset) {
  auto it = std::lower_bound(p.entries.begin(), p.entries.end(), offset,
                             [](const Entry& e, std::int64_t o) { return e.offset < o; });
  return it == p.entries.end() || it->offset != offset ? nullptr : &*it;
}

// ---- records ----------------------------------------------------------------------------------

void PartitionBook::Receive(Partition& p, MessagePtr msg, Clock::time_point now, const MaxDeliveries& max_deliveries) {
  Entry e;
  e.offset = msg->offset;
  e.msg = std::move(msg);
  if (p.tier) {
    // A retry: it was delivered before, and waits until its due time.
    e.deliveries = static_cast<int>(
        std::clamp<std::int64_t>(ParseInt(HeaderOf(*e.msg, header::kDeliveryCount)).value_or(0), 0, 1000000));
    const std::int64_t due_ms = ParseInt(HeaderOf(*e.msg, header::kRetryDue)).value_or(0);
    e.not_before = Clock::now() + std::chrono::milliseconds(
                                      std::clamp<std::int64_t>(due_ms - EpochMs(), 0, std::int64_t{24} * 3600 * 1000));
  }
  if (!p.prior.empty()) {
    if (auto it = p.prior.find(e.offset); it != p.prior.end()) {
      e.deliveries = std::max(e.deliveries, it->second);
      e.suspect = p.dirty_takeover;
      p.prior.erase(it);
    }
  }
  if (e.deliveries > 0 && e.deliveries >= max_deliveries(*e.msg)) {
    // Its deliveries are used up, some perhaps by crashes: dead-letter it without running.
    e.copy = Entry::Copy::kDeadLetter;
    e.reason = e.suspect ? reason::kSuspectedCrash : reason::kMaxDeliveries;
    e.error = "delivered " + std::to_string(e.deliveries) + " times without finishing" +
              (e.suspect ? "; the last owner stopped uncleanly while it ran" : "");
  }
  p.next_offset = e.offset + 1;
  p.entries.push_back(std::move(e));
  p.moved = now;
  if (!p.full && p.entries.size() >= max_buffered_) {
    p.full = true;
    QueuePause(p);
  }
}

std::optional<std::string_view> PartitionBook::OrderKey(const rd_kafka_message_t& m) const {
  switch (ordering_) {
    case Ordering::kUnordered:
      return std::nullopt;
    case Ordering::kPartition:
      return std::string_view();
    case Ordering::kKey:
      if (m.key == nullptr) return std::nullopt;
      return std::string_view(static_cast<const char*>(m.key), m.key_len);
  }
  return std::nullopt;
}

// Looks at the records not looked at yet, in offset order: a record whose key is free takes it
// and may run once leased; one whose key is held parks behind the holder. In a retry tier the
// head waits for its due time, and the partition with it.
void PartitionBook::Examine(Partition& p, Clock::time_point now, std::vector<EntryRef>& dead) {
  while (p.scan < p.entries.size()) {
    Entry& e = p.entries[p.scan];
    if (p.tier && e.not_before > now) {
      if (!p.head_wait) {
        p.head_wait = true;
        QueuePause(p);
      }
      NoteWaiting(e.not_before);
      return;
    }
    ++p.scan;
    if (e.copy == Entry::Copy::kDeadLetter) {  // deliveries used up: no key, no lease
      dead.emplace_back(&p, &e);
      continue;
    }
    if (auto key = OrderKey(*e.msg)) {
      auto [it, inserted] = p.keys.try_emplace(std::pmr::string(*key, &pool_));
      if (!inserted) {
        it->second.parked.push_back(&e);
        continue;
      }
      e.holds_key = true;
    }
    p.need_lease.push_back(&e);
  }
  if (p.head_wait) {
    p.head_wait = false;
    QueuePause(p);
  }
}

void PartitionBook::ReleaseKey(Partition& p, Entry& e) {
  if (!e.holds_key) return;
  e.holds_key = false;
  auto it = p.keys.find(*OrderKey(*e.msg));
  if (it == p.keys.end()) return;
  KeySlot& slot = it->second;
  if (slot.head == slot.parked.size()) {
    p.keys.erase(it);
    return;
  }
  Entry* next = slot.parked[slot.head++];
  next->holds_key = true;
  p.need_lease.push_back(next);
  Want(p);
}

void PartitionBook::Finish(Partition& p, Entry& e) {
  ReleaseKey(p, e);
  if (e.suspect_out) {
    e.suspect_out = false;
    if (--p.suspects_out == 0) WantAll();  // a suspect holds every lane back
  }
  e.state = Entry::State::kDone;
  if (e.msg) released_.push_back(std::move(e.msg));
}

void PartitionBook::AdvanceCommit(Partition& p, Clock::time_point now) {
  const std::int64_t before = p.commit_next;
  while (!p.entries.empty() && p.entries.front().state == Entry::State::kDone) {
    p.commit_next = p.entries.front().offset + 1;
    p.entries.pop_front();
    if (p.scan > 0) --p.scan;
  }
  if (p.commit_next != before) p.moved = now;
  if (p.full && p.entries.size() < max_buffered_ / 2 + 1) {
    p.full = false;
    QueuePause(p);
  }
}

std::int64_t PartitionBook::CommitOffset(const Partition& p) {
  if (p.commit_next >= 0) return p.commit_next;
  return p.entries.empty() ? -1 : p.entries.front().offset;
}

void PartitionBook::Wait(Partition& p, Entry& e, Clock::time_point due) {
  e.state = Entry::State::kWaiting;
  e.due = due;
  p.waits.push_back(&e);
  NoteWaiting(due);
}

// ---- leasing ----------------------------------------------------------------------------------

bool PartitionBook::Scan(Clock::time_point now, std::vector<EntryRef>& dead) {
  lease_wanted = false;
  wanted_lanes = 0;
  next_due = Clock::time_point::max();
  // Suspects (records in flight when a previous owner died) run alone in the whole worker:
  // while one runs, or waits for its turn, nothing else is leased, and it is leased only once
  // every other run finished. So when a suspect crashes the process again, no other record is
  // charged for it: a record is charged at most one extra delivery, by the crash it was in
  // flight for before it became a suspect.
  bool suspect_out = false;
  bool suspect_next = false;
  int in_flight = 0;
  for (auto& [key, p] : partitions_) {
    Examine(p, now, dead);
    in_flight += p.in_flight;
    suspect_out = suspect_out || p.suspects_out > 0;
    suspect_next = suspect_next || (!p.need_lease.empty() && p.need_lease.front()->suspect);
  }
  const bool alone = suspect_out || suspect_next;
  if (alone && !suspect_out && in_flight > 0) NoteWaiting(now + kSuspectDrainCheck);
  return alone && !suspect_out && in_flight == 0;
}

void PartitionBook::Choose(Clock::time_point now, std::span<const std::size_t> queued, std::uint64_t lane_mask,
                           LeaseHooks& hooks, std::vector<EntryRef>& leased) {
  leased.clear();
  // Runs leased and not started yet stay within kLeaseWaves waves in all: they are what a crash
  // charges, and what keeps running after the broker starts refusing commits in a rebalance.
  // Each partition gets a share of the room, and the first partition served rotates. (Larger
  // batches mean fewer lease commits: measured on real Kafka with 16 partitions, whose commits
  // take longer than the embedded broker's, the worker's throughput against a plain consumer was
  // 0.46 with a cap of one wave, 0.59 with four, 0.74 with none.)
  // The room is per priority lane, shared by the lane's partitions.
  const std::size_t wave = static_cast<std::size_t>(kMaxWave) * kLeaseWaves;
  const std::size_t lanes = std::max<std::size_t>(1, queued.size());
  auto lane_of = [&](const Partition& p) { return p.lane < lanes ? p.lane : 0; };
  lane_parts_.assign(lanes, 0);
  lane_left_.assign(lanes, 0);
  lane_share_.assign(lanes, 0);
  bool suspect_out = false;
  int in_flight = 0;
  Partition* suspect_next = nullptr;
  for (auto& [key, p] : partitions_) {
    ++lane_parts_[lane_of(p)];
    in_flight += p.in_flight;
    suspect_out = suspect_out || p.suspects_out > 0;
    if (suspect_next == nullptr && !p.need_lease.empty() && p.need_lease.front()->suspect) suspect_next = &p;
  }
  for (std::size_t l = 0; l < lanes; ++l) {
    const std::size_t q = l < queued.size() ? queued[l] : 0;
    lane_left_[l] = q < wave ? wave - q : 0;
    lane_share_[l] = std::max<std::size_t>(256, lane_left_[l] / std::max<std::size_t>(1, lane_parts_[l]));
  }
  const bool alone = suspect_out || suspect_next != nullptr;
  auto start = partitions_.begin();
  std::advance(start, static_cast<std::ptrdiff_t>(lease_rotation_++ % std::max<std::size_t>(1, partitions_.size())));
  for (std::size_t i = 0; i < partitions_.size(); ++i, ++start) {
    if (start == partitions_.end()) start = partitions_.begin();
    Partition& p = start->second;
    const std::size_t first = leased.size();
    std::size_t& left = lane_left_[lane_of(p)];
    // A lane left out gets no quota: its records stay wanted, its waits noted.
    const std::size_t quota = (lane_mask & LaneBit(lane_of(p))) != 0 ? std::min(lane_share_[lane_of(p)], left) : 0;
    auto lease = [&](Entry* e) {
      if (!e->slot && !hooks.Reserve(p, *e)) {
        p.starved = true;
        QueuePause(p);
        return false;
      }
      e->ticket = true;
      ++e->deliveries;
      leased.emplace_back(&p, e);
      return true;
    };
    for (Entry* w : p.waits) {
      if (w->due > now) {
        NoteWaiting(w->due);
      } else if (w->copy != Entry::Copy::kNone) {
        Want(p);  // a copy to send again: no lease needed (Leased returns it)
      } else if (!alone && !p.starved && p.in_flight + static_cast<int>(leased.size() - first) < kMaxInFlight &&
                 leased.size() - first < quota) {
        lease(w);
      } else if (quota == 0) {
        Want(p);  // its lane was left out of this round, or has no room: a later one
      }
    }
    if (alone) {
      if (&p == suspect_next && !suspect_out && in_flight == 0 && !p.starved) lease(p.need_lease.front());
    } else if (p.suspects_out == 0 && !p.starved) {
      for (Entry* e : p.need_lease) {
        if (p.in_flight + static_cast<int>(leased.size() - first) >= kMaxInFlight) break;
        if (leased.size() - first >= quota) {
          Want(p);  // the rest on a later round
          break;
        }
        if (e->suspect) {  // runs alone, on a later round (see `alone`)
          Want(p);
          break;
        }
        if (!lease(e)) break;  // no free slot: the partition waits for one
      }
    }
    if (leased.size() == first) continue;
    std::int64_t covered = 0;
    std::string ledger = hooks.Ledger(p, &covered);
    // A record whose count did not fit in the ledger is not leased: it waits for room.
    const auto beyond = std::stable_partition(leased.begin() + static_cast<std::ptrdiff_t>(first), leased.end(),
                                              [&](const EntryRef& pe) { return pe.second->offset <= covered; });
    for (auto it = beyond; it != leased.end(); ++it) Unlease(*it->second);
    leased.erase(beyond, leased.end());
    if (leased.size() == first) continue;
    left -= std::min(left, leased.size() - first);
    hooks.Record(p, std::move(ledger));
  }
}

void PartitionBook::Unlease(Entry& e) {
  e.ticket = false;
  --e.deliveries;
  e.slot.Release();
}

void PartitionBook::Leased(Clock::time_point now, std::vector<EntryRef>& resend) {
  for (auto& [key, p] : partitions_) {
    std::erase_if(p.need_lease, [](const Entry* e) { return e->ticket; });
    // Copies due to be sent again, and retries that were just leased, leave the wait list.
    std::erase_if(p.waits, [&](Entry* e) {
      if (e->ticket) return true;
      if (e->copy != Entry::Copy::kNone && e->due <= now) {
        resend.emplace_back(&p, e);
        return true;
      }
      return false;
    });
    if (p.suspects_out == 0 && !p.starved && !p.need_lease.empty() && p.in_flight < kMaxInFlight) Want(p);
  }
}

void PartitionBook::Begin(Partition& p, Entry& e) {
  e.ticket = false;  // this run is the delivery the lease counted
  if (e.suspect && !e.suspect_out) {
    e.suspect_out = true;
    ++p.suspects_out;
  }
  e.state = Entry::State::kRunning;
  ++e.run;
  ++p.in_flight;
}

// ---- fetching ---------------------------------------------------------------------------------

void PartitionBook::QueuePause(Partition& p) {
  if (p.pause_queued) return;
  p.pause_queued = true;
  pause_changes_.push_back(p.epoch);
}

std::vector<Partition*> PartitionBook::TakePauseChanges() {
  std::vector<Partition*> out;
  for (std::uint64_t epoch : pause_changes_) {
    Partition* p = Live(epoch);
    if (p == nullptr) continue;
    p->pause_queued = false;
    if (WantsPause(*p) != p->paused) out.push_back(p);
  }
  pause_changes_.clear();
  return out;
}

void PartitionBook::SlotsFreed() {
  for (auto& [key, p] : partitions_) {
    if (!p.starved) continue;
    p.starved = false;
    QueuePause(p);
    Want(p);
  }
}

}  // namespace kbus::kafka::worker
