#pragma once
// PartitionReader: kbus's one plain reader of a topic, for the code that reads records rather
// than handling them: dead-letter listing and redrive, StateTopic::Load, `kbus tail` and
// `kbus watch`. It joins no group unless asked to (Subscribe): Assign gives it explicit
// partitions with a start offset each and, optionally, an end, so that a read stops at the end a
// partition had when the caller looked (Partitions, Watermarks) instead of waiting for more.
//
//   auto reader = PartitionReader::Open(client, {.topic = "orders"});
//   auto partitions = (*reader)->Partitions();            // low and high watermark of each
//   (*reader)->Assign({{.partition = 0, .from = p.low, .to = p.high}, ...});
//   (*reader)->ReadToEnd(30s, [](ReaderRecord&& r) { ...; return true; });
//
// Client properties: every entry of ClientConfig::properties (-X) is applied over the reader's
// defaults, as for kbus's other clients, except the few the reader's contract rests on:
// group.id, group.instance.id, enable.auto.commit, enable.auto.offset.store,
// enable.partition.eof, auto.offset.reset and log.queue. The reader sets those from
// ReaderOptions, and ignores (with a debug log line) a -X that names one. So `-X
// security.protocol=SSL` or `-X fetch.max.bytes=...` reach every reader, and no -X can make a
// read that should stop at the end wait forever, or commit what it should not.
//
// Errors are Status / Result: kInvalidArgument for a refused property (secret values masked),
// kNotFound for a topic or partition that does not exist, kTimeout past a deadline, kTransport
// for the rest. Transient broker errors are logged and ridden out; librdkafka retries them.
//
// Thread safety: one thread at a time (a reader is a consumer). librdkafka's log lines are
// served by Next, on that thread. Records are owned copies and may go anywhere.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {

// A header as the broker holds it: a header may have no value at all.
struct ReaderHeader {
  std::string name;
  std::optional<std::string> value;
};

// One record read, with owned data. Null key, null value and null header values stay apart
// from empty ones.
struct ReaderRecord {
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::int64_t timestamp_ms = -1;  // -1 when the record has none
  std::optional<std::string> key;
  std::optional<std::string> payload;  // nullopt: a null value (a tombstone)
  std::vector<ReaderHeader> headers;   // in order, repeats included

  // The headers as views into this record (a null value reads as empty), for ParseEnvelope.
  std::vector<HeaderView> HeaderViews() const;
};

// Where a partition's read starts and ends.
struct PartitionSpan {
  static constexpr std::int64_t kBeginning = -2;  // the first record still in the log
  static constexpr std::int64_t kEnd = -1;        // the end at assignment: later records only
  static constexpr std::int64_t kNoEnd = -1;      // `to`: follow the partition, never end

  std::int32_t partition = 0;
  std::int64_t from = kBeginning;  // an offset, kBeginning or kEnd
  std::int64_t to = kNoEnd;        // read up to, not including, this offset
};

// A partition and its watermarks when asked.
struct PartitionRange {
  std::int32_t partition = -1;
  std::int64_t low = 0;   // first offset still in the log
  std::int64_t high = 0;  // the offset the next record will get
};

// What a position does when it is not in the log (a start below what retention kept, records
// deleted under the reader), and, for a subscribed reader, where a partition without a
// committed offset starts.
enum class OffsetReset {
  kEarliest,  // the first record still in the log
  kLatest,    // the end
  kError,     // Next fails with kTransport: a partial read is never taken for the whole
};

struct ReaderOptions {
  std::string topic;
  // The consumer group whose offsets Committed and Commit read and write (without joining it),
  // or that Subscribe joins. Empty: a throwaway id; nothing is committed then.
  std::string group;
  OffsetReset reset = OffsetReset::kEarliest;
};

class PartitionReader {
 public:
  // Creates the consumer; no broker is contacted yet. kInvalidArgument for a refused property.
  static Result<std::unique_ptr<PartitionReader>> Open(const ClientConfig& client, ReaderOptions options);

  ~PartitionReader();  // Close()
  PartitionReader(const PartitionReader&) = delete;
  PartitionReader& operator=(const PartitionReader&) = delete;

  const std::string& topic() const;

  // Every partition of the topic with its watermarks now. Asks for the metadata of all topics,
  // so asking never creates the topic on a broker that creates topics on use. Transient errors
  // (a new topic without a leader yet) are retried until `timeout`. kNotFound: no such topic.
  Result<std::vector<PartitionRange>> Partitions(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // One partition's watermarks now, from its leader.
  Result<PartitionRange> Watermarks(std::int32_t partition,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // The offsets `group` committed for these partitions: the next offset to read, or -1 where
  // it has none.
  Result<std::map<std::int32_t, std::int64_t>> Committed(const std::vector<std::int32_t>& partitions,
                                                         std::chrono::milliseconds timeout);
  // Commits, as `group`, the next offset to read of each partition given; waits for the broker.
  // A group with live members refuses commits from outside it.
  Status Commit(const std::map<std::int32_t, std::int64_t>& next_offsets);

  // Reads these partitions from now on, in place of what was assigned before. A span with an
  // end is done once every offset before `to` was passed (records, or none left to read).
  Status Assign(const std::vector<PartitionSpan>& spans);
  // Joins `group` instead (`kbus tail --group`): the group shares the topic's partitions among
  // its members, each starting at the group's committed offset, else as `reset` says; no end.
  // Records passed to Done are committed within a second and at Close.
  Status Subscribe();
  // Subscribed: the record was dealt with; its offset may be committed.
  void Done(const ReaderRecord& record);

  // The next record, waiting up to `wait`; nullopt when none came or the read is at its end.
  Result<std::optional<ReaderRecord>> Next(std::chrono::milliseconds wait);
  // Every span assigned has an end and reached it (true with nothing assigned).
  bool AtEnd() const;
  // Next until AtEnd, until `on` returns false, or until `timeout` (kTimeout, saying how far
  // each unfinished partition got).
  Status ReadToEnd(std::chrono::milliseconds timeout, const std::function<bool(ReaderRecord&&)>& on);

  // Stops reading; subscribed, commits what Done marked and leaves the group at once. The
  // error is that commit's (kTransport). Later calls do nothing; the destructor calls it.
  Status Close();

 private:
  struct Impl;
  explicit PartitionReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::kafka
