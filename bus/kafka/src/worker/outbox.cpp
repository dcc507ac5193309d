#include "outbox.hpp"

#include <algorithm>

#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"
#include "kbus/log.hpp"

namespace kbus::kafka::worker {

Outbox::Outbox(const WorkerConfig& config, PartitionBook& book, DeliveryPolicies& policies, Series& series,
               Counters& counters, const Clock::time_point& turn)
    : config_(config), book_(book), policies_(policies), series_(series), counters_(counters), turn_(turn) {}

void Outbox::Open(const ProducerConfig& config) {
  producer_ = std::make_unique<Producer>(config);
  quick_config_ = config;
  quick_config_.client.client_id += "-ahead";
  quick_config_.linger = std::chrono::milliseconds(0);
  warm_up_ = std::thread([this] {
    while (!stopping_.load(std::memory_order_relaxed)) {
      if (producer_->LearnTopics(std::chrono::seconds(1)).ok()) {
        warm_.store(true, std::memory_order_relaxed);
        return;
      }
      // The brokers are not reachable yet: the worker is not ready, and says why elsewhere.
    }
  });
}

Outbox::~Outbox() {
  stopping_.store(true, std::memory_order_relaxed);
  if (warm_up_.joinable()) warm_up_.join();
}

void Outbox::SendAll(Partition& p, Entry& e, std::vector<OutgoingRecord> outgoing,
                     std::vector<OutgoingRecord> write_ahead, std::function<void(const Status&)> verdict) {
  e.outgoing = std::move(outgoing);
  e.write_ahead = std::move(write_ahead);
  e.verdict = std::move(verdict);
  e.send_rounds = 0;
  SendOutgoing(p, e);
}

// Sends (again) the messages the handler produced: its write-ahead records while there are
// some, then the rest. A round that fails is sent again whole, with the same message ids, so
// consumers can drop what arrived twice.
void Outbox::SendOutgoing(Partition& p, Entry& e) {
  e.state = Entry::State::kSending;
  e.copy = Entry::Copy::kOutgoing;
  e.send_failed = false;
  const std::vector<OutgoingRecord>& round = e.write_ahead.empty() ? e.outgoing : e.write_ahead;
  e.pending_sends = static_cast<int>(round.size());
  for (const auto& rec : round) Send(p, e, rec);
  if (e.pending_sends == 0) SendsFinished(p, e);  // every send was refused at once
}

void Outbox::Verdict(Entry& e, const Status& s) {
  if (!e.verdict) return;
  auto verdict = std::move(e.verdict);
  e.verdict = nullptr;
  verdict(s);
}

void Outbox::SendDeadLetter(Partition& p, Entry& e) {
  const InboundRecord record = ViewRecord(e.msg.get(), header_buf_);
  Log(LogLevel::kWarn, "dead-lettering record",
      {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
       {"message_id", MessageId(record)}, {"reason", e.reason}, {"error", e.error}, {"attempts", e.deliveries}});
  SendCopy(p, e, Entry::Copy::kDeadLetter,
           MakeDeadLetter(record, DeadLetterInfo{config_.group, e.reason, e.error, e.deliveries, config_.host}));
}

void Outbox::SendToTier(Partition& p, Entry& e) {
  const InboundRecord record = ViewRecord(e.msg.get(), header_buf_);
  // Rounded up, so the copy never runs before its delay passed.
  const auto due_ms = std::chrono::ceil<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch() +
                                                                   std::max(Clock::duration(0), e.due - Clock::now()))
                          .count();
  SendCopy(p, e, Entry::Copy::kRetryTier, MakeRetry(record, RetryInfo{e.tier_topic, e.deliveries, due_ms, e.error}));
}

void Outbox::Resend(Partition& p, Entry& e) {
  switch (e.copy) {
    case Entry::Copy::kDeadLetter:
      SendDeadLetter(p, e);
      return;
    case Entry::Copy::kRetryTier:
      SendToTier(p, e);
      return;
    case Entry::Copy::kOutgoing:
    case Entry::Copy::kNone:
      SendOutgoing(p, e);
      return;
  }
}

// Sends a copy of the record (to the dead-letter topic or a retry tier); the record is finished
// when the broker acknowledged it.
void Outbox::SendCopy(Partition& p, Entry& e, Entry::Copy copy, const OutgoingRecord& rec) {
  e.copy = copy;
  e.state = Entry::State::kSending;
  e.send_failed = false;
  e.pending_sends = 1;
  Send(p, e, rec);
  if (e.pending_sends == 0) SendsFinished(p, e);
}

// Queues one send for `e`. A refusal is recorded in `e` at once; a delivery report arrives later
// through OnSent.
void Outbox::Send(Partition& p, Entry& e, const OutgoingRecord& rec) {
  const bool ahead = !e.write_ahead.empty() && &rec >= e.write_ahead.data() &&
                     &rec < e.write_ahead.data() + e.write_ahead.size();
  const bool quick = ahead && write_aheads_out_ < kQuickWriteAheads;
  if (quick && !quick_) quick_ = std::make_unique<Producer>(quick_config_);
  if (ahead) ++write_aheads_out_;
  Producer& producer = quick ? *quick_ : *producer_;
  Status queued = producer.Produce(rec, [this, ahead, epoch = p.epoch, offset = e.offset](const Status& s) {
    --pending_;
    if (ahead) --write_aheads_out_;
    OnSent(epoch, offset, s);
  });
  if (queued.ok()) {
    ++pending_;
  } else {
    if (ahead) --write_aheads_out_;
    e.send_failed = true;
    e.error = queued.error().message();
    --e.pending_sends;
  }
}

// A delivery report for a record sent on behalf of the record at `offset`.
void Outbox::OnSent(std::uint64_t epoch, std::int64_t offset, const Status& s) {
  Partition* p = book_.Live(epoch);
  // Revoked meanwhile (perhaps assigned again since): the owner redoes the record anyway.
  if (p == nullptr) return;
  Entry* e = PartitionBook::FindEntry(*p, offset);
  if (e == nullptr || e->state != Entry::State::kSending) return;
  if (!s.ok()) {
    e->send_failed = true;
    e->error = s.error().message();
  }
  if (--e->pending_sends > 0) return;
  SendsFinished(*p, *e);
  book_.AdvanceCommit(*p, turn_);
}

// Every send of `e` has its verdict.
void Outbox::SendsFinished(Partition& p, Entry& e) {
  if (!e.send_failed) {
    if (e.copy == Entry::Copy::kOutgoing && !e.write_ahead.empty()) {
      // The write-ahead records are stored: the handler learns it, the key's next record may
      // run, and the rest leaves (in order, so the key need not wait for it).
      e.write_ahead.clear();
      e.send_rounds = 0;
      Verdict(e, Ok());
      book_.ReleaseKey(p, e);
      if (!e.outgoing.empty()) {
        SendOutgoing(p, e);
        return;
      }
    }
    if (e.copy == Entry::Copy::kDeadLetter) {
      Counters::Count(counters_.dead_lettered);
      series_.TypeFor(HeaderOf(*e.msg, header::kType)).dead_lettered->Inc();
      series_.DeadLetterCounter(e.reason).Inc();
    }
    if (e.copy == Entry::Copy::kRetryTier) Counters::Count(counters_.delayed);
    e.outgoing.clear();
    book_.Finish(p, e);
    return;
  }
  const DeliveryPolicy* policy = policies_.Of(*e.msg);
  const bool ahead = e.copy == Entry::Copy::kOutgoing && !e.write_ahead.empty();
  if (e.copy == Entry::Copy::kOutgoing && ++e.send_rounds >= policies_.MaxDeliveries(policy)) {
    // The handler did its part; its messages cannot be sent. Never commit past them.
    Log(LogLevel::kError,
        ahead ? "write-ahead records could not be stored, dead-lettering the record"
              : "outgoing messages could not be sent, dead-lettering the record",
        {{"topic", p.topic}, {"partition", p.partition}, {"offset", e.offset}, {"rounds", e.send_rounds},
         {"error", e.error}});
    e.outgoing.clear();
    e.reason = reason::kPublishError;
    e.error = (ahead ? "the handler succeeded, but its write-ahead records (such as a workflow's state) could not "
                       "be stored in "
                     : "the handler succeeded, but its outgoing messages could not be sent in ") +
              std::to_string(e.send_rounds) + " rounds: " + e.error;
    if (ahead) {
      e.write_ahead.clear();
      Verdict(e, Error(ErrorCode::kTransport, e.error));
      book_.ReleaseKey(p, e);
    }
    SendDeadLetter(p, e);
    return;
  }
  // Sent again when due: a copy, or the handler's messages, without running the handler again.
  Log(LogLevel::kError,
      ahead                                ? "write-ahead send failed, will send again"
      : e.copy == Entry::Copy::kOutgoing ? "outgoing send failed, will send again"
                                         : "copy send failed, will send again",
      {{"topic", p.topic}, {"partition", p.partition}, {"offset", e.offset}, {"error", e.error}});
  // At least kMinSendRetry apart: after a permanent produce error librdkafka refuses the topic
  // until its next metadata refresh, about a second, and rounds inside that would be wasted.
  const auto backoff = policies_.Backoff(e.copy == Entry::Copy::kOutgoing ? e.send_rounds : e.deliveries, policy);
  book_.Wait(p, e, Clock::now() + std::max<std::chrono::milliseconds>(kMinSendRetry, backoff));
}

void Outbox::Failed(Partition& p, Entry& e, std::string_view final_reason, std::string error,
                    std::chrono::milliseconds after, const DeliveryPolicy* policy) {
  const auto next = policies_.AfterFailure(policy, e.deliveries, p.tier);
  if (next.where == DeliveryPolicies::Next::Where::kDeadLetter) {
    book_.ReleaseKey(p, e);
    e.reason = final_reason;
    e.error = std::move(error);
    SendDeadLetter(p, e);
    return;
  }
  Counters::Count(counters_.retried);
  const InboundRecord record = ViewRecord(e.msg.get(), header_buf_);
  series_.TypeFor(record.FindHeader(header::kType)).retried->Inc();
  if (next.where == DeliveryPolicies::Next::Where::kTier) {
    series_.retries_tier->Inc();
    // Later attempts wait in a tier topic, so this partition moves on meanwhile.
    book_.ReleaseKey(p, e);
    e.tier_topic = next.tier_topic;
    e.error = std::move(error);
    e.due = Clock::now() + next.delay;  // as a wall-clock time in the copy's header
    Log(LogLevel::kWarn, "handler failed, will retry from a tier",
        {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
         {"message_id", MessageId(record)}, {"attempt", e.deliveries}, {"tier", e.tier_topic}, {"error", e.error}});
    SendToTier(p, e);
    return;
  }
  series_.retries_worker->Inc();
  book_.Wait(p, e, Clock::now() + std::max(after, policies_.Backoff(e.deliveries, policy)));
  Log(LogLevel::kWarn, "handler failed, will retry",
      {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset},
       {"message_id", MessageId(record)}, {"attempt", e.deliveries}, {"error", error}});
}

bool Outbox::Sending(const Partition& p) {
  for (const auto& e : p.entries) {
    if (e.state == Entry::State::kSending) return true;
  }
  return false;
}

}  // namespace kbus::kafka::worker
