#include "kbus/kafka/dead_letters.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "kbus/dispatcher.hpp"
#include "kbus/envelope.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"
#include "consumer_errors.hpp"
#include "rd_handles.hpp"

namespace kbus::kafka {

namespace {

using detail::RdKafkaPtr;
using detail::RdMessagePtr;
using detail::RdPartitionListPtr;
// A handle only this file needs, owned with rd_handles.hpp's deleter.
using RdMetadataPtr =
    std::unique_ptr<const rd_kafka_metadata_t,
                    detail::RdDeleter<const rd_kafka_metadata_t, &rd_kafka_metadata_destroy>>;

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{50};
constexpr milliseconds kRetryInterval{100};
// How often Redrive commits its cursor while it runs (and once at the end).
constexpr milliseconds kCommitInterval{200};
// Re-sends queued but not yet acknowledged, at most. Bounds what a crash makes Redrive repeat.
constexpr int kMaxInFlight = 100;

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

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

// A consumer that never joins its group: it reads with assign() and commits (Redrive) or not.
Result<RdKafkaPtr> NewConsumer(const ClientConfig& client, const std::string& group_id) {
  std::map<std::string, std::string> properties = {
      {"bootstrap.servers", client.brokers},
      {"client.id", client.client_id},
      {"group.id", group_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},  // ends a partition whose last offsets hold no record
      {"auto.offset.reset", "earliest"},
      {"fetch.wait.max.ms", "100"},
      {"fetch.message.max.bytes", "1048588"},
  };
  for (const auto& [k, v] : client.properties) properties[k] = v;
  try {
    auto conf = detail::MakeConf(properties);
    detail::RouteLogs(conf.get());
    RdKafkaPtr rk = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
    // Logs and consumer events are served by rd_kafka_consumer_poll, on the calling thread.
    if (const rd_kafka_resp_err_t err = rd_kafka_poll_set_consumer(rk.get()); err) {
      return Error(ErrorCode::kInternal,
                   std::string("cannot route the consumer's queue: ") + rd_kafka_err2str(err));
    }
    return rk;
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInvalidArgument, e.what());
  }
}

// Leaves no group (none was joined); the close only stops fetching.
void Close(rd_kafka_t* rk) {
  if (const rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk); err) {
    Log(LogLevel::kWarn, "consumer close failed", {{"error", rd_kafka_err2str(err)}});
  }
}

struct PartitionRange {
  std::int32_t partition = -1;
  std::int64_t low = 0;   // first offset still in the log
  std::int64_t high = 0;  // the offset the next record will get
};

// The topic's partitions and their watermarks, now. Metadata of all topics, not of this one: a
// request naming a missing topic creates it on brokers that auto-create (the embedded one does),
// and a mistyped group must not leave a topic behind. Transient errors (a topic just created has
// no leader yet) are retried until the deadline.
Result<std::vector<PartitionRange>> Ranges(rd_kafka_t* rk, const std::string& topic,
                                           Clock::time_point deadline) {
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
  int partitions = 0;
  for (;;) {
    const rd_kafka_metadata_t* md = nullptr;
    last = rd_kafka_metadata(rk, /*all_topics=*/1, nullptr, &md,
                             std::max(1, RemainingMs(deadline)));
    if (last == RD_KAFKA_RESP_ERR_NO_ERROR) {
      RdMetadataPtr owned(md);
      const rd_kafka_metadata_topic_t* found = nullptr;
      for (int i = 0; i < md->topic_cnt && found == nullptr; ++i) {
        if (topic == md->topics[i].topic) found = &md->topics[i];
      }
      if (found == nullptr) {
        return Error(ErrorCode::kNotFound,
                     "topic '" + topic +
                         "' does not exist: nothing was dead-lettered by this group yet, or the "
                         "group name is wrong");
      }
      last = found->err;
      partitions = found->partition_cnt;
      for (int i = 0; last == RD_KAFKA_RESP_ERR_NO_ERROR && i < partitions; ++i) {
        last = found->partitions[i].err;
      }
      if (last == RD_KAFKA_RESP_ERR_NO_ERROR && partitions > 0) break;
    }
    if (Clock::now() >= deadline) {
      return Error(ErrorCode::kTimeout,
                   "cannot read metadata of topic '" + topic + "': " + rd_kafka_err2str(last),
                   true);
    }
    std::this_thread::sleep_for(kRetryInterval);
  }
  std::vector<PartitionRange> out;
  for (std::int32_t p = 0; p < partitions; ++p) {
    PartitionRange r{.partition = p};
    const rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        rk, topic.c_str(), p, &r.low, &r.high, std::max(1, RemainingMs(deadline)));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Error(ErrorCode::kTransport,
                   "cannot read the end offsets of '" + topic + "' partition " +
                       std::to_string(p) + ": " + rd_kafka_err2str(err),
                   true);
    }
    out.push_back(r);
  }
  return out;
}

DeadLetterRecord ToRecord(const rd_kafka_message_t& m) {
  DeadLetterRecord r;
  r.partition = m.partition;
  r.offset = m.offset;
  if (m.key != nullptr) r.key.assign(static_cast<const char*>(m.key), m.key_len);
  if (m.payload != nullptr) r.payload.assign(static_cast<const char*>(m.payload), m.len);
  rd_kafka_headers_t* headers = nullptr;  // owned by the message
  if (rd_kafka_message_headers(&m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      r.headers.push_back(
          {name, value != nullptr ? std::string(static_cast<const char*>(value), size) : ""});
    }
  }
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


Status Assign(rd_kafka_t* rk, const std::string& topic,
              const std::vector<std::pair<std::int32_t, std::int64_t>>& starts) {
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(starts.size())));
  for (const auto& [partition, offset] : starts) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  }
  if (const rd_kafka_resp_err_t err = rd_kafka_assign(rk, list.get()); err) {
    return Error(ErrorCode::kTransport,
                 "cannot read topic '" + topic + "': " + rd_kafka_err2str(err), true);
  }
  return Ok();
}

// Reads one partition from `from` up to (not including) `high`, handing each record to `on`
// until it returns false. kTimeout at the deadline.
template <class On>
Status ReadPartition(rd_kafka_t* rk, const std::string& topic, std::int32_t partition,
                     std::int64_t from, std::int64_t high, Clock::time_point deadline, On on) {
  if (from >= high) return Ok();
  if (Status s = Assign(rk, topic, {{partition, from}}); !s.ok()) return s;
  std::int64_t position = from;
  while (position < high) {
    if (Clock::now() >= deadline) {
      return Error(ErrorCode::kTimeout,
                   "read '" + topic + "' partition " + std::to_string(partition) +
                       " only up to offset " + std::to_string(position) + " of " +
                       std::to_string(high) + " in time: is the broker reachable? (raise the timeout)",
                   true);
    }
    RdMessagePtr m(rd_kafka_consumer_poll(rk, static_cast<int>(kPollInterval.count())));
    if (!m || m->partition != partition) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      position = std::max(position, m->offset);  // offsets without a record (none to wait for)
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (Status s = detail::CheckConsumerError(rk, *m, topic); !s.ok()) return s;
      continue;
    }
    position = m->offset + 1;
    if (m->offset >= high) break;  // written after the call started
    if (!on(ToRecord(*m))) break;
  }
  return Ok();
}

std::string ReaderGroup() {
  // librdkafka's assign() needs a group id; nothing joins or commits under this one.
  return "kbus-dlq-reader-" + std::to_string(std::random_device{}());
}

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
  std::int64_t high = 0;       // end offset at the start of the run
  bool read_all = false;       // every record below `high` was decided on
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

Status Commit(rd_kafka_t* rk, const std::string& topic, std::map<std::int32_t, Cursor>& cursors) {
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(cursors.size())));
  for (const auto& [partition, c] : cursors) {
    if (c.done_to > c.committed) {
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = c.done_to;
    }
  }
  if (list->cnt == 0) return Ok();
  rd_kafka_resp_err_t err = rd_kafka_commit(rk, list.get(), /*async=*/0);
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; ++i) err = list->elems[i].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport,
                 "cannot commit the redrive cursor of '" + topic + "': " + rd_kafka_err2str(err) +
                     " (the records since the last commit will be re-sent by the next run)",
                 true);
  }
  for (int i = 0; i < list->cnt; ++i) {
    cursors[list->elems[i].partition].committed = list->elems[i].offset;
  }
  return Ok();
}

// Where each partition starts: the group's committed offset, else (or with from_beginning) the
// first offset in the log.
Status LoadCursors(rd_kafka_t* rk, const std::string& topic,
                   const std::vector<PartitionRange>& ranges, bool from_beginning,
                   Clock::time_point deadline, std::map<std::int32_t, Cursor>& cursors) {
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(ranges.size())));
  for (const auto& r : ranges) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), r.partition);
  }
  rd_kafka_resp_err_t err = rd_kafka_committed(rk, list.get(), std::max(1, RemainingMs(deadline)));
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; ++i) err = list->elems[i].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport,
                 "cannot read the redrive cursor of '" + topic + "': " + rd_kafka_err2str(err),
                 true);
  }
  for (const auto& r : ranges) {
    const auto* committed =
        rd_kafka_topic_partition_list_find(list.get(), topic.c_str(), r.partition);
    Cursor c;
    c.high = r.high;
    c.committed = committed != nullptr && committed->offset >= 0 ? committed->offset : -1;
    // Below `low` the log is gone (retention): nothing left to re-send there.
    c.done_to = from_beginning || c.committed < r.low ? r.low : c.committed;
    c.read_all = c.done_to >= c.high;
    cursors[r.partition] = c;
  }
  return Ok();
}

// What ListDeadLetters and ReadDeadLetter start from: a consumer outside any group, and the
// dead-letter topic's partitions with their watermarks, read before `deadline`.
struct DeadLetterReader {
  RdKafkaPtr consumer;
  std::string topic;
  std::vector<PartitionRange> ranges;
  Clock::time_point deadline;
};

Result<DeadLetterReader> OpenReader(const ClientConfig& client, std::string_view group, milliseconds timeout) {
  DeadLetterReader reader;
  reader.deadline = Clock::now() + timeout;
  reader.topic = DeadLetterTopic(group);
  auto consumer = NewConsumer(client, ReaderGroup());
  if (!consumer.ok()) return consumer.error();
  reader.consumer = std::move(*consumer);
  auto ranges = Ranges(reader.consumer.get(), reader.topic, reader.deadline);
  if (!ranges.ok()) return ranges.error();
  reader.ranges = std::move(*ranges);
  return reader;
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

std::string RedriveGroup(std::string_view group) { return DeadLetterTopic(group) + ".redrive"; }

Result<std::vector<DeadLetterRecord>> ListDeadLetters(const ClientConfig& client,
                                                      std::string_view group,
                                                      const DeadLetterFilter& filter,
                                                      milliseconds timeout) {
  auto reader = OpenReader(client, group, timeout);
  if (!reader.ok()) return reader.error();
  rd_kafka_t* rk = reader->consumer.get();
  const std::string& topic = reader->topic;
  const auto deadline = reader->deadline;
  std::vector<DeadLetterRecord> out;
  Status status = Ok();
  // One partition after the other, so that a limit keeps the same records every time.
  for (const auto& r : reader->ranges) {
    if (filter.limit != 0 && out.size() >= filter.limit) break;
    status = ReadPartition(rk, topic, r.partition, r.low, r.high, deadline,
                           [&](DeadLetterRecord&& record) {
                             if (filter.Matches(record)) out.push_back(std::move(record));
                             return filter.limit == 0 || out.size() < filter.limit;
                           });
    if (!status.ok()) break;
  }
  Close(rk);
  if (!status.ok()) return status.error();
  return out;
}

Result<DeadLetterRecord> ReadDeadLetter(const ClientConfig& client, std::string_view group,
                                        std::int32_t partition, std::int64_t offset,
                                        milliseconds timeout) {
  auto reader = OpenReader(client, group, timeout);
  if (!reader.ok()) return reader.error();
  rd_kafka_t* rk = reader->consumer.get();
  const std::string& topic = reader->topic;
  const auto deadline = reader->deadline;
  const std::vector<PartitionRange>& ranges = reader->ranges;
  const std::string where = Where(topic, partition, offset);
  if (partition < 0 || partition >= static_cast<std::int32_t>(ranges.size())) {
    Close(rk);
    return Error(ErrorCode::kNotFound, "no record at " + where + ": '" + topic + "' has " +
                                           std::to_string(ranges.size()) + " partitions");
  }
  const PartitionRange& range = ranges[static_cast<std::size_t>(partition)];
  if (offset < range.low || offset >= range.high) {
    Close(rk);
    return Error(ErrorCode::kNotFound,
                 "no record at " + where + ": partition " + std::to_string(partition) +
                     (range.low >= range.high ? " is empty"
                                              : " holds offsets " + std::to_string(range.low) +
                                                    " to " + std::to_string(range.high - 1)));
  }
  std::optional<DeadLetterRecord> found;
  const Status status = ReadPartition(rk, topic, partition, offset, offset + 1, deadline,
                                      [&](DeadLetterRecord&& record) {
                                        if (record.offset == offset) found = std::move(record);
                                        return false;
                                      });
  Close(rk);
  if (!status.ok()) return status.error();
  if (!found) return Error(ErrorCode::kNotFound, "no record at " + where + " (compacted away?)");
  return std::move(*found);
}

Result<RedriveReport> Redrive(const ClientConfig& client, std::string_view group,
                              const RedriveOptions& options, const std::atomic<bool>* stop) {
  const std::string topic = DeadLetterTopic(group);
  auto consumer = NewConsumer(client, RedriveGroup(group));
  if (!consumer.ok()) return consumer.error();
  rd_kafka_t* rk = consumer->get();
  std::unique_ptr<Producer> producer;
  if (!options.dry_run) {
    try {
      // Delivery reports are served by our Poll and Flush calls, so on this thread.
      producer =
          std::make_unique<Producer>(ProducerConfig{.client = client, .background_poll = false});
    } catch (const std::exception& e) {
      Close(rk);
      return Error(ErrorCode::kInvalidArgument, e.what());
    }
  }

  std::map<std::int32_t, Cursor> cursors;
  {
    const auto deadline = Clock::now() + options.timeout;
    auto ranges = Ranges(rk, topic, deadline);
    Status s = ranges.ok()
                   ? LoadCursors(rk, topic, *ranges, options.from_beginning, deadline, cursors)
                   : Status(ranges.error());
    std::vector<std::pair<std::int32_t, std::int64_t>> starts;
    for (const auto& [partition, c] : cursors) {
      if (!c.read_all) starts.emplace_back(partition, c.done_to);
    }
    if (s.ok() && !starts.empty()) s = Assign(rk, topic, starts);
    if (!s.ok()) {
      Close(rk);
      return s.error();
    }
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
  auto all_read = [&] {
    return std::all_of(cursors.begin(), cursors.end(),
                       [](const auto& c) { return c.second.read_all; });
  };
  auto last_commit = Clock::now();
  Status commit_status = Ok();

  while (!failure && !all_read()) {
    if (stop != nullptr && stop->load()) {
      report.stopped = true;
      break;
    }
    if (options.filter.limit != 0 && queued >= options.filter.limit) break;
    if (producer) producer->Poll(milliseconds(0));
    if (!options.dry_run && Clock::now() - last_commit >= kCommitInterval) {
      commit_status = Commit(rk, topic, cursors);
      if (!commit_status.ok()) break;
      last_commit = Clock::now();
    }
    RdMessagePtr m(rd_kafka_consumer_poll(rk, static_cast<int>(kPollInterval.count())));
    if (!m) continue;
    const auto it = cursors.find(m->partition);
    if (it == cursors.end() || it->second.read_all) continue;
    Cursor& cursor = it->second;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->offset >= cursor.high) cursor.read_all = true;
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (Status s = detail::CheckConsumerError(rk, *m, topic); !s.ok()) {
        failure = s.error();
        break;
      }
      continue;
    }
    if (m->offset >= cursor.high) {  // dead-lettered after the run started: the next run's
      cursor.read_all = true;
      continue;
    }
    const std::int64_t offset = m->offset;
    auto record = std::make_shared<DeadLetterRecord>(ToRecord(*m));
    if (!options.filter.Matches(*record)) {
      ++report.skipped;
      cursor.Finish(offset);  // the cursor passes over it with the next finished position
      if (offset + 1 >= cursor.high) cursor.read_all = true;
      if (options.on_record) options.on_record(*record, false, report);
      continue;
    }
    std::string target = options.to_topic.empty() ? record->original_topic : options.to_topic;
    if (target.empty()) {
      failure = Error(ErrorCode::kInvalidArgument,
                      Where(topic, m->partition, offset) +
                          " has no kbus-dlq-original-topic header: redrive it with a target "
                          "topic (--to TOPIC)");
      break;
    }
    if (!limiter.Acquire(stop, serve)) {
      report.stopped = true;  // this record stays unsent and before the cursor
      break;
    }
    ++queued;
    if (offset + 1 >= cursor.high) cursor.read_all = true;
    if (options.dry_run) {
      ++report.redriven;
      if (options.on_record) options.on_record(*record, true, report);
      continue;
    }
    while (producer->InFlight() >= kMaxInFlight) producer->Poll(milliseconds(10));
    cursor.open[offset] = false;
    const std::int32_t partition = m->partition;
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
    const Status s = Commit(rk, topic, cursors);
    if (commit_status.ok()) commit_status = s;
  }
  Close(rk);
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
