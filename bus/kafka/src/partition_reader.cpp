#include "kbus/kafka/partition_reader.hpp"

#include <algorithm>
#include <climits>
#include <random>
#include <set>
#include <thread>

#include "kbus/log.hpp"
#include "rd_handles.hpp"

namespace kbus::kafka {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using detail::RdMetadataPtr;

constexpr milliseconds kRetryInterval{100};
constexpr milliseconds kPollSlice{100};
// How often a subscribed reader commits what Done marked.
constexpr milliseconds kCommitInterval{1000};

// Set by the reader alone: a -X naming one is ignored (see the header).
const std::set<std::string>& ReservedProperties() {
  static const std::set<std::string> kReserved = {
      "group.id",           "group.instance.id",    "enable.auto.commit", "enable.auto.offset.store",
      "enable.partition.eof", "auto.offset.reset", "log.queue"};
  return kReserved;
}

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

std::string MaskSecrets(std::string text, const std::map<std::string, std::string>& properties) {
  for (const auto& [name, value] : properties) {
    if (value.empty() || !IsSecretProperty(name)) continue;
    for (auto at = text.find(value); at != std::string::npos; at = text.find(value, at + 3)) {
      text.replace(at, value.size(), "***");
    }
  }
  return text;
}

std::string_view ResetName(OffsetReset reset) {
  switch (reset) {
    case OffsetReset::kEarliest: return "earliest";
    case OffsetReset::kLatest: return "latest";
    case OffsetReset::kError: return "error";
  }
  return "earliest";
}

std::map<std::string, std::string> Properties(const ClientConfig& client, const ReaderOptions& options) {
  std::map<std::string, std::string> p = {
      {"bootstrap.servers", client.brokers},
      {"client.id", client.client_id},
      {"fetch.wait.max.ms", "100"},
      {"fetch.message.max.bytes", "1048588"},
  };
  for (const auto& [k, v] : client.properties) {
    if (ReservedProperties().contains(k)) {
      Log(LogLevel::kDebug, "property set by the reader itself; -X ignored",
          {{"property", k}, {"topic", options.topic}});
      continue;
    }
    p[k] = v;
  }
  // librdkafka's assign() needs a group id, even when nothing joins or commits under it.
  p["group.id"] = options.group.empty() ? "kbus-reader-" + std::to_string(std::random_device{}()) : options.group;
  p["enable.auto.commit"] = "false";        // Commit, or Done and our own commits, only
  p["enable.auto.offset.store"] = "false";  // Done stores
  p["enable.partition.eof"] = "true";       // ends a span whose last offsets hold no record
  p["auto.offset.reset"] = std::string(ResetName(options.reset));
  return p;
}

ReaderRecord ToRecord(const rd_kafka_message_t& m) {
  ReaderRecord r;
  r.partition = m.partition;
  r.offset = m.offset;
  r.timestamp_ms = rd_kafka_message_timestamp(&m, nullptr);
  if (m.key != nullptr) r.key.emplace(static_cast<const char*>(m.key), m.key_len);
  if (m.payload != nullptr) r.payload.emplace(static_cast<const char*>(m.payload), m.len);
  rd_kafka_headers_t* headers = nullptr;  // owned by the message
  if (rd_kafka_message_headers(&m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      ReaderHeader& h = r.headers.emplace_back();
      h.name = name;
      if (value != nullptr) h.value.emplace(static_cast<const char*>(value), size);
    }
  }
  return r;
}

}  // namespace

std::vector<HeaderView> ReaderRecord::HeaderViews() const {
  std::vector<HeaderView> out;
  out.reserve(headers.size());
  for (const auto& h : headers) out.push_back({h.name, h.value ? std::string_view(*h.value) : std::string_view()});
  return out;
}

struct PartitionReader::Impl {
  // A span being read: `next` is the offset after the last one passed (-1 before the first).
  struct Span {
    std::int64_t to = PartitionSpan::kNoEnd;
    std::int64_t next = -1;
    bool done = false;
  };

  ReaderOptions options;
  std::map<std::string, std::string> properties;  // for masking secrets in errors
  detail::RdKafkaPtr rk;
  std::map<std::int32_t, Span> spans;
  bool subscribed = false;
  bool stored = false;  // Done stored offsets not committed yet
  Clock::time_point last_commit = Clock::now();
  bool closed = false;

  ~Impl() {
    if (Status s = Close(); !s.ok()) {
      Log(LogLevel::kWarn, "final commit failed", {{"topic", options.topic}, {"error", s.error().message()}});
    }
  }

  std::string Partition(std::int32_t p) const { return "'" + options.topic + "' partition " + std::to_string(p); }

  void Finish(std::int32_t partition, Span& span) {
    span.done = true;
    // Stops fetching what nobody will read; the rest of the assignment goes on.
    detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), options.topic.c_str(), partition);
    if (const rd_kafka_resp_err_t err = rd_kafka_pause_partitions(rk.get(), list.get()); err) {
      Log(LogLevel::kDebug, "cannot pause a finished partition",
          {{"topic", options.topic}, {"partition", partition}, {"error", rd_kafka_err2str(err)}});
    }
  }

  // A missing topic, records lost under a kError reader and fatal errors end the read; anything
  // else is logged and ridden out, since librdkafka retries by itself.
  Status CheckError(const rd_kafka_message_t& m) {
    const std::string what = rd_kafka_message_errstr(&m);
    if (m.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || m.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
      return Error(ErrorCode::kNotFound, "topic '" + options.topic + "' does not exist: " + what);
    }
    if (m.err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
      return Error(ErrorCode::kNotFound, Partition(m.partition) + " does not exist: " + what);
    }
    if (m.err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
      const auto it = spans.find(m.partition);
      const std::string from = it != spans.end() && it->second.next >= 0 ? std::to_string(it->second.next) : "?";
      return Error(ErrorCode::kTransport,
                   "reading " + Partition(m.partition) + " failed: " + what + " (records from offset " + from +
                       " on were deleted while reading; read again)",
                   true);
    }
    char reason[512];
    if (rd_kafka_fatal_error(rk.get(), reason, sizeof reason) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Error(ErrorCode::kTransport, std::string("consumer failed: ") + reason);
    }
    Log(LogLevel::kWarn, "consumer error", {{"topic", options.topic}, {"partition", m.partition}, {"error", what}});
    return Ok();
  }

  Status CommitStored() {
    stored = false;
    last_commit = Clock::now();
    const rd_kafka_resp_err_t err = rd_kafka_commit(rk.get(), nullptr, /*async=*/0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
      return Error(ErrorCode::kTransport,
                   "cannot commit the offsets of group '" + options.group + "': " + rd_kafka_err2str(err), true);
    }
    return Ok();
  }

  Status Close() {
    if (closed) return Ok();
    closed = true;
    Status status = Ok();
    if (subscribed && stored) status = CommitStored();
    if (const rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk.get()); err) {
      Log(LogLevel::kWarn, "consumer close failed", {{"topic", options.topic}, {"error", rd_kafka_err2str(err)}});
    }
    // Serves the log lines still queued (RouteLogs) before the handle goes.
    while (detail::RdMessagePtr m{rd_kafka_consumer_poll(rk.get(), 0)}) {
    }
    return status;
  }
};

PartitionReader::PartitionReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PartitionReader::~PartitionReader() = default;

Result<std::unique_ptr<PartitionReader>> PartitionReader::Open(const ClientConfig& client, ReaderOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->properties = Properties(client, options);
  impl->options = std::move(options);
  Log(LogLevel::kDebug, "reader configuration",
      {{"topic", impl->options.topic}, {"properties", DescribeProperties(impl->properties)}});
  try {
    auto conf = detail::MakeConf(impl->properties);
    detail::RouteLogs(conf.get());
    impl->rk = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
  } catch (const std::exception& e) {
    impl->closed = true;  // nothing to close
    return Error(ErrorCode::kInvalidArgument, MaskSecrets(e.what(), impl->properties));
  }
  // Logs and consumer events are served by rd_kafka_consumer_poll, on the caller's thread.
  if (const rd_kafka_resp_err_t err = rd_kafka_poll_set_consumer(impl->rk.get()); err) {
    return Error(ErrorCode::kInternal, std::string("cannot route the consumer's queue: ") + rd_kafka_err2str(err));
  }
  return std::unique_ptr<PartitionReader>(new PartitionReader(std::move(impl)));
}

const std::string& PartitionReader::topic() const { return impl_->options.topic; }

Result<std::vector<PartitionRange>> PartitionReader::Partitions(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string& topic = impl_->options.topic;
  rd_kafka_t* rk = impl_->rk.get();
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
  int partitions = 0;
  for (;;) {
    const rd_kafka_metadata_t* md = nullptr;
    last = rd_kafka_metadata(rk, /*all_topics=*/1, nullptr, &md, std::max(1, RemainingMs(deadline)));
    if (last == RD_KAFKA_RESP_ERR_NO_ERROR) {
      RdMetadataPtr owned(md);
      const rd_kafka_metadata_topic_t* found = nullptr;
      for (int i = 0; i < md->topic_cnt && found == nullptr; ++i) {
        if (topic == md->topics[i].topic) found = &md->topics[i];
      }
      if (found == nullptr) return Error(ErrorCode::kNotFound, "topic '" + topic + "' does not exist");
      last = found->err;
      partitions = found->partition_cnt;
      for (int i = 0; last == RD_KAFKA_RESP_ERR_NO_ERROR && i < partitions; ++i) last = found->partitions[i].err;
      if (last == RD_KAFKA_RESP_ERR_NO_ERROR && partitions > 0) break;
    }
    if (Clock::now() >= deadline) {
      return Error(ErrorCode::kTimeout, "cannot read metadata of topic '" + topic + "': " + rd_kafka_err2str(last),
                   true);
    }
    std::this_thread::sleep_for(kRetryInterval);
  }
  std::vector<PartitionRange> out;
  for (std::int32_t p = 0; p < partitions; ++p) {
    auto range = Watermarks(p, milliseconds(std::max(1, RemainingMs(deadline))));
    if (!range.ok()) return range.error();
    out.push_back(*range);
  }
  return out;
}

Result<PartitionRange> PartitionReader::Watermarks(std::int32_t partition, milliseconds timeout) {
  PartitionRange r{.partition = partition};
  const rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(impl_->rk.get(), impl_->options.topic.c_str(), partition, &r.low, &r.high,
                                       static_cast<int>(std::clamp<long long>(timeout.count(), 1, INT_MAX)));
  if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
    return Error(ErrorCode::kNotFound, impl_->Partition(partition) + " does not exist: " + rd_kafka_err2str(err));
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport,
                 "cannot read the end offsets of " + impl_->Partition(partition) + ": " + rd_kafka_err2str(err), true);
  }
  return r;
}

Result<std::map<std::int32_t, std::int64_t>> PartitionReader::Committed(const std::vector<std::int32_t>& partitions,
                                                                        milliseconds timeout) {
  const std::string& topic = impl_->options.topic;
  detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
  for (const std::int32_t p : partitions) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  rd_kafka_resp_err_t err = rd_kafka_committed(impl_->rk.get(), list.get(),
                                               static_cast<int>(std::clamp<long long>(timeout.count(), 1, INT_MAX)));
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; ++i) err = list->elems[i].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport,
                 "cannot read the offsets group '" + impl_->options.group + "' committed for '" + topic +
                     "': " + rd_kafka_err2str(err),
                 true);
  }
  std::map<std::int32_t, std::int64_t> out;
  for (int i = 0; i < list->cnt; ++i) out[list->elems[i].partition] = std::max<std::int64_t>(list->elems[i].offset, -1);
  return out;
}

Status PartitionReader::Commit(const std::map<std::int32_t, std::int64_t>& next_offsets) {
  if (next_offsets.empty()) return Ok();
  const std::string& topic = impl_->options.topic;
  if (impl_->options.group.empty()) {
    return Error(ErrorCode::kInvalidArgument, "a reader of '" + topic + "' without a group cannot commit");
  }
  detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets.size())));
  for (const auto& [p, offset] : next_offsets) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = offset;
  }
  rd_kafka_resp_err_t err = rd_kafka_commit(impl_->rk.get(), list.get(), /*async=*/0);
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; ++i) err = list->elems[i].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport,
                 "cannot commit offsets of '" + topic + "' for group '" + impl_->options.group +
                     "': " + rd_kafka_err2str(err),
                 true);
  }
  return Ok();
}

Status PartitionReader::Assign(const std::vector<PartitionSpan>& spans) {
  const std::string& topic = impl_->options.topic;
  impl_->spans.clear();
  detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(spans.size())));
  for (const auto& s : spans) {
    Impl::Span& span = impl_->spans[s.partition];
    span.to = s.to;
    span.next = s.from >= 0 ? s.from : -1;
    if (s.to >= 0 && s.from >= 0 && s.from >= s.to) {
      span.done = true;  // nothing to read
      continue;
    }
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), s.partition)->offset =
        s.from == PartitionSpan::kBeginning ? RD_KAFKA_OFFSET_BEGINNING
        : s.from == PartitionSpan::kEnd     ? RD_KAFKA_OFFSET_END
                                            : s.from;
  }
  // Also with an empty list: what was assigned before stops.
  if (const rd_kafka_resp_err_t err = rd_kafka_assign(impl_->rk.get(), list.get()); err) {
    return Error(ErrorCode::kTransport, "cannot read topic '" + topic + "': " + rd_kafka_err2str(err), true);
  }
  // A partition that an earlier span finished stays paused across assignments until resumed.
  if (list->cnt > 0) {
    if (const rd_kafka_resp_err_t err = rd_kafka_resume_partitions(impl_->rk.get(), list.get()); err) {
      return Error(ErrorCode::kTransport, "cannot resume topic '" + topic + "': " + rd_kafka_err2str(err), true);
    }
  }
  return Ok();
}

Status PartitionReader::Subscribe() {
  const std::string& topic = impl_->options.topic;
  if (impl_->options.group.empty()) {
    return Error(ErrorCode::kInvalidArgument, "a reader of '" + topic + "' without a group cannot join one");
  }
  detail::RdPartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (const rd_kafka_resp_err_t err = rd_kafka_subscribe(impl_->rk.get(), topics.get()); err) {
    return Error(ErrorCode::kTransport, "cannot subscribe to topic '" + topic + "': " + rd_kafka_err2str(err), true);
  }
  impl_->spans.clear();
  impl_->subscribed = true;
  return Ok();
}

void PartitionReader::Done(const ReaderRecord& record) {
  if (!impl_->subscribed) return;
  detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), impl_->options.topic.c_str(), record.partition)->offset =
      record.offset + 1;
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(impl_->rk.get(), list.get());
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = list->elems[0].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Log(LogLevel::kWarn, "cannot store offset (partition revoked?)",
        {{"topic", impl_->options.topic},
         {"partition", record.partition},
         {"offset", record.offset},
         {"error", rd_kafka_err2str(err)}});
    return;
  }
  impl_->stored = true;
}

bool PartitionReader::AtEnd() const {
  if (impl_->subscribed) return false;
  return std::all_of(impl_->spans.begin(), impl_->spans.end(),
                     [](const auto& s) { return s.second.to >= 0 && s.second.done; });
}

Result<std::optional<ReaderRecord>> PartitionReader::Next(milliseconds wait) {
  Impl& impl = *impl_;
  const auto deadline = Clock::now() + wait;
  while (!impl.closed && !AtEnd()) {
    if (impl.subscribed && impl.stored && Clock::now() - impl.last_commit >= kCommitInterval) {
      if (Status s = impl.CommitStored(); !s.ok()) {
        Log(LogLevel::kWarn, "commit failed; retried within a second", {{"error", s.error().message()}});
        impl.stored = true;
      }
    }
    const int slice = std::min<int>(RemainingMs(deadline), static_cast<int>(kPollSlice.count()));
    detail::RdMessagePtr m(rd_kafka_consumer_poll(impl.rk.get(), slice));
    if (!m) {
      if (Clock::now() >= deadline) break;
      continue;
    }
    Impl::Span* span = nullptr;
    if (!impl.subscribed) {
      const auto it = impl.spans.find(m->partition);
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (it == impl.spans.end() || it->second.done) continue;  // left over from an earlier Assign
      }
      if (it != impl.spans.end()) span = &it->second;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // Offsets without a record up to the end (compacted, transaction markers): none to wait for.
      if (span != nullptr) {
        span->next = std::max(span->next, m->offset);
        if (span->to >= 0 && span->next >= span->to) impl.Finish(m->partition, *span);
      }
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (Status s = impl.CheckError(*m); !s.ok()) return s.error();
      continue;
    }
    if (span != nullptr) {
      if (span->to >= 0 && m->offset >= span->to) {  // written after the end was taken
        impl.Finish(m->partition, *span);
        continue;
      }
      span->next = m->offset + 1;
      if (span->to >= 0 && span->next >= span->to) impl.Finish(m->partition, *span);
    }
    return std::optional<ReaderRecord>(ToRecord(*m));
  }
  return std::optional<ReaderRecord>();
}

Status PartitionReader::ReadToEnd(milliseconds timeout, const std::function<bool(ReaderRecord&&)>& on) {
  const auto deadline = Clock::now() + timeout;
  while (!AtEnd()) {
    if (Clock::now() >= deadline) {
      std::string where;
      for (const auto& [p, span] : impl_->spans) {
        if (span.done) continue;
        where += (where.empty() ? "" : ", ") + std::to_string(p) + " up to offset " +
                 (span.next >= 0 ? std::to_string(span.next) : "?") + " of " + std::to_string(span.to);
      }
      return Error(ErrorCode::kTimeout,
                   "read '" + impl_->options.topic + "' only partly within " + std::to_string(timeout.count()) +
                       " ms (partition " + where + "): is the broker reachable? (raise the timeout)",
                   true);
    }
    auto next = Next(std::min<milliseconds>(kPollSlice, milliseconds(RemainingMs(deadline))));
    if (!next.ok()) return next.error();
    if (*next && !on(std::move(**next))) break;
  }
  return Ok();
}

Status PartitionReader::Close() { return impl_->Close(); }

}  // namespace kbus::kafka
