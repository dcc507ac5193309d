#include "offset_committer.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "kbus/kafka/delivery_ledger.hpp"
#include "kbus/log.hpp"

namespace kbus::kafka::worker {

using detail::RdPartitionListPtr;

void OffsetCommitter::ReadCommitted(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts) {
  const rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, 10000);
  if (err) {
    Log(LogLevel::kError, "cannot read committed offsets, delivery counts start over",
        {{"error", rd_kafka_err2str(err)}});
  }
}

void OffsetCommitter::TakeOver(Partition& p, const rd_kafka_topic_partition_t& tp) {
  if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR || tp.offset < 0) return;
  p.start = tp.offset;
  if (tp.metadata_size == 0) return;
  const std::string_view text(static_cast<const char*>(tp.metadata), tp.metadata_size);
  auto ledger = DeliveryLedger::Decode(text, tp.offset);
  if (!ledger.ok()) {
    // Loud, not fatal: the counts start over, so a poison record gets more deliveries.
    Log(LogLevel::kError, "unreadable delivery ledger, counts start over",
        {{"topic", p.topic}, {"partition", p.partition}, {"error", ledger.error().message()}});
    return;
  }
  p.prior = std::move(ledger->deliveries);
  p.dirty_takeover = !ledger->clean;
  p.committed = tp.offset;
  p.committed_metadata = std::string(text);
  if (!p.prior.empty()) {
    Log(p.dirty_takeover ? LogLevel::kWarn : LogLevel::kInfo,
        p.dirty_takeover ? "taking over after an unclean stop: delivered records run one at a time"
                         : "taking over delivery counts",
        {{"topic", p.topic}, {"partition", p.partition}, {"records", p.prior.size()}});
  }
}

std::string OffsetCommitter::LedgerFor(const Partition& p, bool clean, std::int64_t* covered_until) {
  // Entries are in offset order, and the earlier owner's counts are for records not fetched yet
  // (a fetched record takes its count over): merge the two sorted sequences.
  std::vector<std::pair<std::int64_t, int>>& counts = ledger_buf_;
  counts.clear();
  auto prior = p.prior.begin();
  for (const auto& e : p.entries) {
    if (e.deliveries <= 0) continue;
    for (; prior != p.prior.end() && prior->first < e.offset; ++prior) counts.emplace_back(*prior);
    counts.emplace_back(e.offset, e.deliveries);
  }
  for (; prior != p.prior.end(); ++prior) counts.emplace_back(*prior);
  std::int64_t covered = 0;
  std::string text = DeliveryLedger::EncodeSorted(clean || counts.empty(), counts, PartitionBook::CommitOffset(p),
                                                  kMaxLedgerBytes, &covered);
  if (!counts.empty() && covered < counts.back().first && !ledger_full_logged_) {
    ledger_full_logged_ = true;  // once per worker: it repeats on every commit while it lasts
    Log(LogLevel::kWarn, "delivery ledger full: counts past an offset are not recorded",
        {{"topic", p.topic}, {"partition", p.partition}, {"covered_until", covered}, {"records", counts.size()}});
  }
  if (covered_until != nullptr) *covered_until = covered;
  return text;
}

void OffsetCommitter::Add(rd_kafka_topic_partition_list_t* list, const Partition& p, std::string metadata) {
  rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition);
  tp->offset = PartitionBook::CommitOffset(p);
  if (!metadata.empty()) {
    // librdkafka frees it with the list.
    tp->metadata = std::malloc(metadata.size());
    if (tp->metadata == nullptr) throw std::bad_alloc();
    std::memcpy(tp->metadata, metadata.data(), metadata.size());
    tp->metadata_size = metadata.size();
  }
}

OffsetCommitter::~OffsetCommitter() {
  if (answers_ != nullptr) rd_kafka_queue_destroy(answers_);
}

void OffsetCommitter::Attach(rd_kafka_t* consumer, rd_kafka_queue_t* wake) {
  consumer_ = consumer;
  answers_ = rd_kafka_queue_new(consumer);
  // Called on a librdkafka thread when an answer lands on the empty queue.
  rd_kafka_queue_cb_event_enable(answers_, &OffsetCommitter::WakeTrampoline, wake);
}

void OffsetCommitter::WakeTrampoline(rd_kafka_t*, void* queue) noexcept {
  rd_kafka_queue_yield(static_cast<rd_kafka_queue_t*>(queue));
}

detail::RdPartitionListPtr OffsetCommitter::Changed(const std::vector<Partition*>& ps, bool clean) {
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(ps.size())));
  for (Partition* p : ps) {
    if (PartitionBook::CommitOffset(*p) < 0) continue;
    std::string metadata = LedgerFor(*p, clean);
    if (PartitionBook::CommitOffset(*p) > p->committed || metadata != p->committed_metadata) {
      Add(list.get(), *p, std::move(metadata));
    }
  }
  return list;
}

void OffsetCommitter::CommitAllNow(bool clean) {
  std::vector<Partition*> all;
  book_.ForEach([&](Partition& p) { all.push_back(&p); });
  CommitChangedNow(all, clean);
}

void OffsetCommitter::CommitChangedNow(const std::vector<Partition*>& ps, bool clean) {
  if (!Settle(kSettleTimeout)) return;  // logged by Settle
  RdPartitionListPtr list = Changed(ps, clean);
  if (list->cnt == 0) return;
  Send(std::move(list), /*lease=*/false, {});
  Settle(kSettleTimeout);
}

bool OffsetCommitter::CommitAllAsync() {
  if (busy()) return false;
  std::vector<Partition*> all;
  book_.ForEach([&](Partition& p) { all.push_back(&p); });
  RdPartitionListPtr list = Changed(all, /*clean=*/false);
  if (list->cnt == 0) return false;
  Send(std::move(list), /*lease=*/false, {});
  return true;
}

void OffsetCommitter::Lease(Clock::time_point now, std::span<const std::size_t> queued, std::uint64_t lanes,
                            const std::function<bool(Partition&, Entry&)>& reserve) {
  if (busy()) return;
  struct Hooks final : LeaseHooks {
    OffsetCommitter& self;
    const std::function<bool(Partition&, Entry&)>& reserve;
    rd_kafka_topic_partition_list_t* list;
    Hooks(OffsetCommitter& s, const std::function<bool(Partition&, Entry&)>& r, rd_kafka_topic_partition_list_t* l)
        : self(s), reserve(r), list(l) {}
    bool Reserve(Partition& p, Entry& e) override { return reserve(p, e); }
    std::string Ledger(const Partition& p, std::int64_t* covered) override {
      return self.LedgerFor(p, /*clean=*/false, covered);
    }
    void Record(Partition& p, std::string ledger) override { Add(list, p, std::move(ledger)); }
  };
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(book_.size())));
  Hooks hooks(*this, reserve, list.get());
  book_.Choose(now, queued, lanes, hooks, leased_buf_);
  if (leased_buf_.empty()) return;
  std::vector<std::pair<std::uint64_t, std::int64_t>> leased;
  leased.reserve(leased_buf_.size());
  for (auto& [p, e] : leased_buf_) leased.emplace_back(p->epoch, e->offset);
  Send(std::move(list), /*lease=*/true, std::move(leased));
}

void OffsetCommitter::Send(RdPartitionListPtr list, bool lease,
                           std::vector<std::pair<std::uint64_t, std::int64_t>> leased) {
  const rd_kafka_resp_err_t err = rd_kafka_commit_queue(consumer_, list.get(), answers_, nullptr, nullptr);
  in_flight_.emplace(InFlight{std::move(list), lease, std::move(leased), Clock::now()});
  if (err) OnAnswer(err, nullptr);  // refused before it was sent
}

void OffsetCommitter::Poll(std::chrono::milliseconds timeout) {
  if (!busy()) return;
  rd_kafka_event_t* ev = rd_kafka_queue_poll(answers_, static_cast<int>(timeout.count()));
  if (ev == nullptr) return;
  detail::RdEventPtr owned(ev);
  if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_OFFSET_COMMIT) return;
  OnAnswer(rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev));
}

bool OffsetCommitter::Settle(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (busy()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      Log(LogLevel::kWarn, "offset commit not answered, going on without it",
          {{"waited_ms", std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()}});
      // Its answer, should it come, finds nothing leased any more: the counts it carries are
      // at most one too high.
      for (auto& [epoch, offset] : in_flight_->leased) {
        Partition* p = book_.Live(epoch);
        Entry* e = p == nullptr ? nullptr : PartitionBook::FindEntry(*p, offset);
        if (e != nullptr && e->ticket) PartitionBook::Unlease(*e);
      }
      in_flight_.reset();
      return false;
    }
    Poll(left);
  }
  return true;
}

void OffsetCommitter::OnAnswer(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* answer) {
  InFlight done = std::move(*in_flight_);
  in_flight_.reset();
  last_round_trip_ = Clock::now() - done.sent;
  const bool accepted = OnCommitted(err, done.list.get(), answer);
  leased_buf_.clear();
  for (auto& [epoch, offset] : done.leased) {
    Partition* p = book_.Live(epoch);  // revoked meanwhile: the next owner has the count
    Entry* e = p == nullptr ? nullptr : PartitionBook::FindEntry(*p, offset);
    if (e == nullptr || !e->ticket) continue;
    if (accepted) {
      leased_buf_.emplace_back(p, e);
    } else {
      PartitionBook::Unlease(*e);  // not recorded, so not run
    }
  }
  if (!accepted) {
    book_.NoteWaiting(Clock::now() + kLeaseRetry);  // leasing waited for this commit: try again
    return;
  }
  book_.WantAll();  // leasing waited for this commit: the next round may go
  if (done.lease) on_leased_(leased_buf_);
}

bool OffsetCommitter::OnCommitted(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* sent,
                                  const rd_kafka_topic_partition_list_t* answer) {
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return true;
  bool all = err == RD_KAFKA_RESP_ERR_NO_ERROR;
  // The answer lists the partitions sent, in the same order, each with its own verdict.
  const bool itemized = answer != nullptr && answer->cnt == sent->cnt;
  for (int i = 0; i < sent->cnt; ++i) {
    const auto& tp = sent->elems[i];
    const rd_kafka_resp_err_t tp_err = itemized ? answer->elems[i].err : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err || tp_err) {
      all = false;
      if (tp_err) err = tp_err;
      continue;
    }
    if (Partition* p = book_.Find(tp.topic, tp.partition)) {
      p->committed = std::max(p->committed, tp.offset);
      p->committed_metadata.assign(static_cast<const char*>(tp.metadata), tp.metadata_size);
    }
  }
  if (all) Counters::Count(counters_.committed);
  (all ? series_.commits_ok : series_.commits_failed)->Inc();
  if (!all) {
    // Expected during rebalances (REBALANCE_IN_PROGRESS): the next commit covers it. Real Kafka
    // also refuses metadata over offset.metadata.max.bytes, which the ledger stays under.
    Log(LogLevel::kInfo, "offset commit refused", {{"error", rd_kafka_err2str(err)}});
  }
  return all;
}

}  // namespace kbus::kafka::worker
