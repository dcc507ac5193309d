#include "results.hpp"

#include <vector>

#include "kbus/dead_letter.hpp"
#include "kbus/log.hpp"

namespace kbus::kafka::worker {

// A result that is not served: what the handler wrote ahead will not be sent.
static void Discard(DispatchResult& r, const char* why) {
  if (r.verdict) {
    auto verdict = std::move(r.verdict);
    r.verdict = nullptr;
    verdict(Error(ErrorCode::kInternal, why));
  }
}

void Results::Serve(Attempt& a) {
  TypeSeries& type = TypeOf(a);
  if (a.ran) type.duration->Observe(a.seconds);
  if (a.abandoned) return Discard(a.result, "the delivery was abandoned");  // already given up on; counted then
  Partition* p = book_.Live(a.epoch);
  // Revoked meanwhile: the new owner runs it again.
  if (p == nullptr) return Discard(a.result, "the partition was given away");
  book_.RunEnded(*p);
  Entry* e = static_cast<Entry*>(a.entry);
  if (e->state != Entry::State::kRunning || e->run != a.run) return Discard(a.result, "the result is stale");
  if (!a.ran) {  // skipped because the partition was being revoked
    e->state = Entry::State::kQueued;
    return;
  }
  DispatchResult& r = a.result;
  switch (r.kind) {
    case DispatchResult::Kind::kAck:
    case DispatchResult::Kind::kSkip:
      Counters::Count(r.kind == DispatchResult::Kind::kAck ? counters_.handled : counters_.skipped);
      ++(r.kind == DispatchResult::Kind::kAck ? type.acked_here : type.skipped_here);
      if (!r.write_ahead.empty()) {
        // The key stays held until the write-ahead records are acknowledged.
        outbox_.SendAll(*p, *e, std::move(r.outgoing), std::move(r.write_ahead), std::move(r.verdict));
        return;
      }
      if (r.verdict) r.verdict(Ok());  // nothing to wait for
      if (r.outgoing.empty()) {
        book_.Finish(*p, *e);
        book_.AdvanceCommit(*p, turn_);
      } else {
        // The key is free once the outgoing messages are queued: they leave in order.
        book_.ReleaseKey(*p, *e);
        outbox_.SendAll(*p, *e, std::move(r.outgoing));
      }
      return;
    case DispatchResult::Kind::kRetry:
      outbox_.Failed(*p, *e, reason::kHandlerError, std::move(r.error), r.retry_after, policies_.Of(*e->msg));
      return;
    case DispatchResult::Kind::kDeadLetter:
      book_.ReleaseKey(*p, *e);
      e->reason = r.reason;
      e->error = std::move(r.error);
      outbox_.SendDeadLetter(*p, *e);
      return;
  }
}

TypeSeries& Results::TypeOf(const Attempt& a) {
  TypeSeries* t = a.series.load(std::memory_order_acquire);
  return t != nullptr ? *t : series_.Unknown();
}

void Results::Abandon(Attempt& a, std::string why, bool decide) {
  if (decide) {
    // The handler may have returned meanwhile: then its result stands and is on its way, and the
    // handler thread may be freeing the headers this would read.
    int expected = Attempt::kRunning;
    if (!a.claim.compare_exchange_strong(expected, Attempt::kAbandoned)) return;
  }
  a.visibility.Cancel();
  a.abandoned = true;
  a.stuck_at = a.started + (a.visibility.deadline() - a.started) * kStuckFactor;
  Counters::Count(counters_.abandoned);
  TypeOf(a).abandoned->Inc();
  Partition* p = book_.Live(a.epoch);
  if (p == nullptr) return;
  if (!decide) {
    --p->in_flight;
    return;
  }
  book_.RunEnded(*p);
  Entry* e = PartitionBook::FindEntry(*p, a.offset);
  if (e == nullptr || e->state != Entry::State::kRunning || e->run != a.run) return;
  ++e->run;  // its result, when it comes, is stale
  std::vector<HeaderView> headers;
  const InboundRecord record = ViewRecord(e->msg.get(), headers);
  Log(LogLevel::kWarn, "delivery abandoned",
      {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
       {"message_id", MessageId(record)}, {"attempt", e->deliveries}, {"error", why}});
  outbox_.Failed(*p, *e, reason::kVisibilityTimeout, std::move(why), std::chrono::milliseconds(0),
                 policies_.Of(*e->msg));
}

}  // namespace kbus::kafka::worker
