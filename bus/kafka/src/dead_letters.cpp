#include "kbus/kafka/dead_letters.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <memory>
#include <thread>

#include "kbus/dispatcher.hpp"
#include "kbus/envelope.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/kafka/producer.hpp"

namespace kbus::kafka {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{50};
// How often Redrive commits its cursor while it runs (and once at the end).
constexpr milliseconds kCommitInterval{200};
// Re-sends queued but not yet acknowledged, at most. Bounds what a crash makes Redrive repeat.
constexpr int kMaxInFlight = 100;

template <class I>
I ParseNumber(std::string_view text, I fallback) {
  I out{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc() || end != text.data() + text.size()) return fallback;
  return out;
}

std::string Where(std::string_view topic, std::int32_t partition, std::int64_t offset) {
  return std::string(topic) + "/" + std::to_string(partition) + "/" + std::to_string(offset);
}

}  // namespace

DeadLetterRecord ToDeadLetterRecord(ReaderRecord&& m) {
  DeadLetterRecord r;
  r.partition = m.partition;
  r.offset = m.offset;
  r.key = std::move(m.key).value_or("");
  r.payload = std::move(m.payload).value_or("");
  for (auto& h : m.headers) r.headers.push_back({std::move(h.name), std::move(h.value).value_or("")});
  // One pass, the last header of a name wins (as InboundRecord::FindHeader).
  for (const auto& h : r.headers) {
    const std::string_view n = h.name;
    if (n == header::kDlqReason) r.reason = h.value;
    else if (n == header::kDlqError) r.error = h.value;
    else if (n == header::kType) r.type = h.value;
    else if (n == header::kId) r.id = h.value;
    else if (n == header::kDlqTopic) r.original_topic = h.value;
    else if (n == header::kDlqPartition) {
      r.original_partition = ParseNumber<std::int32_t>(h.value, -1);
    }
    else if (n == header::kDlqOffset) r.original_offset = ParseNumber<std::int64_t>(h.value, -1);
    else if (n == header::kDlqTimestamp) {
      r.original_timestamp_ms = ParseNumber<std::int64_t>(h.value, -1);
    } else if (n == header::kDlqAttempts) r.attempts = ParseNumber<int>(h.value, 0);
    else if (n == header::kDlqAt) r.at_ms = ParseNumber<std::int64_t>(h.value, -1);
  }
  return r;
}

namespace {


// At most `per_second` acquisitions per second, evenly spaced (a bucket of one token). The wait
// serves `idle` (delivery reports) instead of sleeping, and ends early when `stop` is set.
class RateLimiter {
 public:
  explicit RateLimiter(double per_second)
      : interval_(per_second > 0 ? std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(1.0 / per_second))
                                 : Clock::duration::zero()),
        next_(Clock::now()) {}

  // False when `stop` became true before the token was due.
  template <class Idle>
  bool Acquire(const std::atomic<bool>* stop, Idle idle) {
    if (interval_ == Clock::duration::zero()) return true;
    for (auto now = Clock::now(); now < next_; now = Clock::now()) {
      if (stop != nullptr && stop->load()) return false;
      idle(std::min<milliseconds>(std::chrono::duration_cast<milliseconds>(next_ - now) +
                                      milliseconds(1),
                                  milliseconds(10)));
    }
    // A run that fell behind does not burst to catch up.
    next_ = std::max(next_, Clock::now() - interval_) + interval_;
    return true;
  }

 private:
  Clock::duration interval_;
  Clock::time_point next_;
};

OutgoingRecord RedriveCopy(const DeadLetterRecord& r, std::string topic,
                           const std::string& dlq_topic) {
  OutgoingRecord out;
  out.topic = std::move(topic);
  out.key = r.key;
  out.payload = r.payload;
  for (const auto& h : r.headers) {
    const std::string_view n = h.name;
    // Diagnostics of this dead-lettering, the old delivery count (it starts over) and the
    // origin of an earlier redrive are not part of the message.
    if (n.starts_with(header::kDlqPrefix) || n == header::kDeliveryCount ||
        n == header::kRedriveOf) {
      continue;
    }
    out.headers.push_back(h);
  }
  out.headers.push_back({std::string(header::kRedriveOf), Where(dlq_topic, r.partition, r.offset)});
  return out;
}

// Redrive's position in one partition of the dead-letter topic.
struct Cursor {
  std::int64_t done_to = 0;    // every offset below this one is finished: the commit position
  std::int64_t committed = 0;  // what the group has committed
  std::map<std::int64_t, bool> open;  // decided records not yet finished: offset -> finished

  void Finish(std::int64_t offset) {
    if (open.empty()) {
      done_to = offset + 1;
      return;
    }
    open[offset] = true;
    while (!open.empty() && open.begin()->second) {
      done_to = open.begin()->first + 1;
      open.erase(open.begin());
    }
  }
};

Status Commit(PartitionReader& reader, std::map<std::int32_t, Cursor>& cursors) {
  std::map<std::int32_t, std::int64_t> next;
  for (const auto& [partition, c] : cursors) {
    if (c.done_to > c.committed) next[partition] = c.done_to;
  }
  if (Status s = reader.Commit(next); !s.ok()) {
    return Error(s.error().code(),
                 s.error().message() + " (the records since the last commit will be re-sent by the next run)",
                 s.error().retriable());
  }
  for (const auto& [partition, offset] : next) cursors[partition].committed = offset;
  return Ok();
}

// A reader of "<group>.dlq", as `reader_group` (empty: none), and the topic's partitions with
// their watermarks.
struct DeadLetterReader {
  std::unique_ptr<PartitionReader> reader;
  std::vector<PartitionRange> ranges;
};

Result<DeadLetterReader> OpenReader(const ClientConfig& client, std::string_view group,
                                    std::string reader_group, milliseconds timeout) {
  auto reader = PartitionReader::Open(client, {.topic = DeadLetterTopic(group), .group = std::move(reader_group)});
  if (!reader.ok()) return reader.error();
  auto ranges = (*reader)->Partitions(timeout);
  if (!ranges.ok() && ranges.error().code() == ErrorCode::kNotFound) {
    return Error(ErrorCode::kNotFound, ranges.error().message() +
                                           ": nothing was dead-lettered by this group yet, or the group name is wrong");
  }
  if (!ranges.ok()) return ranges.error();
  return DeadLetterReader{std::move(*reader), std::move(*ranges)};
}

milliseconds Left(Clock::time_point deadline) {
  return std::chrono::duration_cast<milliseconds>(std::max(deadline - Clock::now(), Clock::duration::zero()));
}

}  // namespace

std::optional<std::string_view> DeadLetterRecord::FindHeader(std::string_view name) const {
  std::optional<std::string_view> found;
  for (const auto& h : headers) {
    if (h.name == name) found = h.value;
  }
  return found;
}

bool DeadLetterFilter::Matches(const DeadLetterRecord& r) const {
  auto any_of = [](const std::vector<std::string>& values, const std::string& v) {
    return values.empty() || std::find(values.begin(), values.end(), v) != values.end();
  };
  if (!any_of(reasons, r.reason) || !any_of(types, r.type)) return false;
  // A record without a (valid) kbus-dlq-at matches no time bound.
  if (since_ms && (r.at_ms < 0 || r.at_ms < *since_ms)) return false;
  if (until_ms && (r.at_ms < 0 || r.at_ms >= *until_ms)) return false;
  return true;
}

Result<OutgoingRecord> RedriveOne(const ClientConfig& client, std::string_view group, std::int32_t partition,
                                  std::int64_t offset, std::string_view to_topic, milliseconds timeout) {
  auto record = ReadDeadLetter(client, group, partition, offset, timeout);
  if (!record.ok()) return record.error();
  const std::string topic = DeadLetterTopic(group);
  std::string target = to_topic.empty() ? record->original_topic : std::string(to_topic);
  if (target.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 Where(topic, partition, offset) + " has no kbus-dlq-original-topic header: name a target topic");
  }
  OutgoingRecord copy = RedriveCopy(*record, std::move(target), topic);
  try {
    Producer producer(ProducerConfig{.client = client});
    if (Status s = producer.SendSync(copy, timeout); !s.ok()) return s.error();
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInvalidArgument, e.what());
  }
  return copy;
}

std::string RedriveGroup(std::string_view group) { return DeadLetterTopic(group) + ".redrive"; }

Result<std::vector<DeadLetterRecord>> ListDeadLetters(const ClientConfig& client,
                                                      std::string_view group,
                                                      const DeadLetterFilter& filter,
                                                      milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto opened = OpenReader(client, group, "", timeout);
  if (!opened.ok()) return opened.error();
  PartitionReader& reader = *opened->reader;
  std::vector<DeadLetterRecord> out;
  // One partition after the other, so that a limit keeps the same records every time.
  for (const auto& r : opened->ranges) {
    if (filter.limit != 0 && out.size() >= filter.limit) break;
    Status status = reader.Assign({{.partition = r.partition, .from = r.low, .to = r.high}});
    if (status.ok()) {
      status = reader.ReadToEnd(Left(deadline), [&](ReaderRecord&& m) {
        DeadLetterRecord record = ToDeadLetterRecord(std::move(m));
        if (filter.Matches(record)) out.push_back(std::move(record));
        return filter.limit == 0 || out.size() < filter.limit;
      });
    }
    if (!status.ok()) return status.error();
  }
  return out;
}

Result<DeadLetterRecord> ReadDeadLetter(const ClientConfig& client, std::string_view group,
                                        std::int32_t partition, std::int64_t offset,
                                        milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto opened = OpenReader(client, group, "", timeout);
  if (!opened.ok()) return opened.error();
  PartitionReader& reader = *opened->reader;
  const std::string& topic = reader.topic();
  const std::vector<PartitionRange>& ranges = opened->ranges;
  const std::string where = Where(topic, partition, offset);
  if (partition < 0 || partition >= static_cast<std::int32_t>(ranges.size())) {
    return Error(ErrorCode::kNotFound, "no record at " + where + ": '" + topic + "' has " +
                                           std::to_string(ranges.size()) + " partitions");
  }
  const PartitionRange& range = ranges[static_cast<std::size_t>(partition)];
  if (offset < range.low || offset >= range.high) {
    return Error(ErrorCode::kNotFound,
                 "no record at " + where + ": partition " + std::to_string(partition) +
                     (range.low >= range.high ? " is empty"
                                              : " holds offsets " + std::to_string(range.low) +
                                                    " to " + std::to_string(range.high - 1)));
  }
  std::optional<DeadLetterRecord> found;
  Status status = reader.Assign({{.partition = partition, .from = offset, .to = offset + 1}});
  if (status.ok()) {
    status = reader.ReadToEnd(Left(deadline), [&](ReaderRecord&& m) {
      if (m.offset == offset) found = ToDeadLetterRecord(std::move(m));
      return false;
    });
  }
  if (!status.ok()) return status.error();
  if (!found) return Error(ErrorCode::kNotFound, "no record at " + where + " (compacted away?)");
  return std::move(*found);
}

Result<RedriveReport> Redrive(const ClientConfig& client, std::string_view group,
                              const RedriveOptions& options, const std::atomic<bool>* stop) {
  // The cursor is the committed offsets of the redrive group, which this reader never joins.
  auto opened = OpenReader(client, group, RedriveGroup(group), options.timeout);
  if (!opened.ok()) return opened.error();
  PartitionReader& reader = *opened->reader;
  const std::string& topic = reader.topic();
  std::unique_ptr<Producer> producer;
  if (!options.dry_run) {
    try {
      // Delivery reports are served by our Poll and Flush calls, so on this thread.
      producer =
          std::make_unique<Producer>(ProducerConfig{.client = client, .background_poll = false});
    } catch (const std::exception& e) {
      return Error(ErrorCode::kInvalidArgument, e.what());
    }
  }

  // Each partition starts at the group's committed offset, else (or with from_beginning) at the
  // first offset in the log, and ends at the end offset it had at the start.
  std::map<std::int32_t, Cursor> cursors;
  {
    std::vector<std::int32_t> partitions;
    for (const auto& r : opened->ranges) partitions.push_back(r.partition);
    auto committed = reader.Committed(partitions, options.timeout);
    if (!committed.ok()) return committed.error();
    std::vector<PartitionSpan> spans;
    for (const auto& r : opened->ranges) {
      Cursor& c = cursors[r.partition];
      c.committed = (*committed)[r.partition];
      // Below `low` the log is gone (retention): nothing left to re-send there.
      c.done_to = options.from_beginning || c.committed < r.low ? r.low : c.committed;
      spans.push_back({.partition = r.partition, .from = c.done_to, .to = r.high});
    }
    if (Status s = reader.Assign(spans); !s.ok()) return s.error();
  }

  RedriveReport report;
  std::optional<Error> failure;  // the first failed send; nothing at or after it is committed
  std::size_t queued = 0;
  RateLimiter limiter(options.max_per_second);
  auto serve = [&](milliseconds wait) {
    if (producer) {
      producer->Poll(wait);
    } else {
      std::this_thread::sleep_for(wait);  // dry run: nothing to serve
    }
  };
  auto last_commit = Clock::now();
  Status commit_status = Ok();

  while (!failure && !reader.AtEnd()) {
    if (stop != nullptr && stop->load()) {
      report.stopped = true;
      break;
    }
    if (options.filter.limit != 0 && queued >= options.filter.limit) break;
    if (producer) producer->Poll(milliseconds(0));
    if (!options.dry_run && Clock::now() - last_commit >= kCommitInterval) {
      commit_status = Commit(reader, cursors);
      if (!commit_status.ok()) break;
      last_commit = Clock::now();
    }
    auto next = reader.Next(kPollInterval);
    if (!next.ok()) {
      failure = next.error();
      break;
    }
    if (!*next) continue;
    const std::int32_t partition = (*next)->partition;
    const std::int64_t offset = (*next)->offset;
    Cursor& cursor = cursors[partition];
    auto record = std::make_shared<DeadLetterRecord>(ToDeadLetterRecord(std::move(**next)));
    if (!options.filter.Matches(*record)) {
      ++report.skipped;
      cursor.Finish(offset);  // the cursor passes over it with the next finished position
      if (options.on_record) options.on_record(*record, false, report);
      continue;
    }
    std::string target = options.to_topic.empty() ? record->original_topic : options.to_topic;
    if (target.empty()) {
      failure = Error(ErrorCode::kInvalidArgument,
                      Where(topic, partition, offset) +
                          " has no kbus-dlq-original-topic header: redrive it with a target "
                          "topic (--to TOPIC)");
      break;
    }
    if (!limiter.Acquire(stop, serve)) {
      report.stopped = true;  // this record stays unsent and before the cursor
      break;
    }
    ++queued;
    if (options.dry_run) {
      ++report.redriven;
      if (options.on_record) options.on_record(*record, true, report);
      continue;
    }
    while (producer->InFlight() >= kMaxInFlight) producer->Poll(milliseconds(10));
    cursor.open[offset] = false;
    Status sent = producer->Produce(
        RedriveCopy(*record, std::move(target), topic),
        [&, record, partition, offset](const Status& s) {
          if (!s.ok()) {
            if (!failure) failure = s.error();
            return;
          }
          cursors[partition].Finish(offset);
          ++report.redriven;
          if (options.on_record) options.on_record(*record, true, report);
        });
    if (!sent.ok()) {
      failure = sent.error();
      break;
    }
  }

  if (producer) {
    // Waits for the re-sends in flight; their offsets are committed only if acknowledged.
    if (Status s = producer->Flush(options.timeout); !s.ok() && !failure) failure = s.error();
    // Now, while the delivery callbacks' targets (cursors, report, failure) are alive: the
    // destructor serves the reports of whatever the flush left.
    producer.reset();
  }
  if (!options.dry_run) {
    const Status s = Commit(reader, cursors);
    if (commit_status.ok()) commit_status = s;
  }
  if (failure) {
    return Error(failure->code(),
                 failure->message() + " (redriven " + std::to_string(report.redriven) +
                     " before the failure; the next run starts with the first record not "
                     "acknowledged)",
                 failure->retriable());
  }
  if (!commit_status.ok()) return commit_status.error();
  return report;
}

}  // namespace kbus::kafka
