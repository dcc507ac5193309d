#pragma once
// Dead-letter tooling: read a consumer group's dead-letter topic ("<group>.dlq") and redrive its
// records to where they came from, once whatever made them fail has been fixed.
//
// ListDeadLetters and ReadDeadLetter read without joining any group and commit nothing.
// Redrive keeps its position (the "cursor") as committed offsets of the group
// "<group>.dlq.redrive", so a second run continues where the first stopped. A record's offset is
// committed only after its re-sent copy was acknowledged by the broker: an interrupted redrive
// loses nothing and re-sends at most the records that were in flight (docs/delivery.md,
// "Redrive").
//
// Thread safety: each call uses its own clients and may run on any thread; calls may run
// concurrently, but two Redrive calls for the same group at once are not excluded from each
// other and may both re-send a record.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {

// One record of a dead-letter topic: the original bytes plus the diagnostics kbus added.
struct DeadLetterRecord {
  std::int32_t partition = -1;  // in the dead-letter topic
  std::int64_t offset = -1;
  std::string key;  // empty for a null key
  std::string payload;
  std::vector<Header> headers;  // all of them, in order, kbus-dlq-* included

  // Parsed from the headers; empty / -1 / 0 when a header is absent or malformed.
  std::string reason;  // kbus-dlq-reason: decode-error, unknown-type, rejected, ...
  std::string error;   // kbus-dlq-error
  std::string type;    // kbus-type
  std::string id;      // kbus-id
  std::string original_topic;
  std::int32_t original_partition = -1;
  std::int64_t original_offset = -1;
  std::int64_t original_timestamp_ms = -1;
  int attempts = 0;
  std::int64_t at_ms = -1;  // kbus-dlq-at: when it was dead-lettered, Unix epoch milliseconds

  // The last header of that name, or nullopt.
  std::optional<std::string_view> FindHeader(std::string_view name) const;
};

// Which dead letters a call looks at. Empty lists and absent bounds match everything.
struct DeadLetterFilter {
  std::vector<std::string> reasons;     // kbus-dlq-reason is one of these
  std::vector<std::string> types;       // kbus-type is one of these
  std::optional<std::int64_t> since_ms;  // kbus-dlq-at >= since_ms
  std::optional<std::int64_t> until_ms;  // kbus-dlq-at < until_ms
  // ListDeadLetters: at most this many records. Redrive: at most this many re-sent. 0: no limit.
  std::size_t limit = 0;

  bool Matches(const DeadLetterRecord& record) const;
};

// The records of "<group>.dlq" that match `filter`, in partition order and, within a partition,
// in offset order, up to the end offsets the topic had when the call started (it does not wait
// for more). Errors: kNotFound when the topic does not exist, kTimeout when the records could not
// be read within `timeout`, kInvalidArgument for a refused client property.
Result<std::vector<DeadLetterRecord>> ListDeadLetters(
    const ClientConfig& client, std::string_view group, const DeadLetterFilter& filter,
    std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The record at `partition`/`offset` of "<group>.dlq"; kNotFound when there is none.
Result<DeadLetterRecord> ReadDeadLetter(
    const ClientConfig& client, std::string_view group, std::int32_t partition,
    std::int64_t offset, std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct RedriveReport {
  std::size_t redriven = 0;  // re-sent and acknowledged (dry run: would have been re-sent)
  std::size_t skipped = 0;   // passed over by the filter; the cursor moved past them
  bool stopped = false;      // the stop flag ended the run before the end offsets
};

struct RedriveOptions {
  DeadLetterFilter filter;
  // Where to re-send; empty: each record's original topic (kbus-dlq-original-topic).
  std::string to_topic;
  // At most this many re-sends per second; 0: no limit.
  double max_per_second = 0;
  // Report what would be re-sent: nothing is sent and the cursor does not move.
  bool dry_run = false;
  // Start at the beginning of the topic instead of at the cursor (and move the cursor from there).
  bool from_beginning = false;
  // How long the broker may take to answer a metadata, offset or commit request, and to
  // acknowledge the re-sends still in flight when the run ends.
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
  // Called on the calling thread for every record the run decided on: `redriven` true once its
  // copy was acknowledged (dry run: when it would have been sent), false when the filter skipped
  // it. `so_far` counts this record.
  std::function<void(const DeadLetterRecord& record, bool redriven, const RedriveReport& so_far)>
      on_record;
};

// Re-sends the records of "<group>.dlq" that match the filter, from the cursor of the group
// "<group>.dlq.redrive" up to the end offsets taken at the start. Each copy keeps the original
// key, value and headers, minus every kbus-dlq-* header and kbus-delivery-count, plus
// kbus-redrive-of "<dlq topic>/<partition>/<offset>". Records dead-lettered again during the run
// land after the end offsets and wait for the next run.
//
// `stop` (may be null) is read between records: once it is true no further record is sent, the
// ones in flight are awaited, their offsets committed, and the report says stopped. Errors:
// kNotFound (no such topic), kInvalidArgument (a record without an original topic and no
// to_topic; a refused client property), kTransport / kTimeout (a send or commit failed; the
// cursor stays before the failed record).
Result<RedriveReport> Redrive(const ClientConfig& client, std::string_view group,
                              const RedriveOptions& options,
                              const std::atomic<bool>* stop = nullptr);

// Re-sends the one record at `partition`/`offset` of "<group>.dlq", as the same copy Redrive
// makes, to `to_topic` (empty: its original topic), and waits for the acknowledgement. It reads
// and moves no cursor: a later Redrive run that reaches the record sends it again, with the same
// message id, which receivers that drop duplicates (workflows do) ignore. Returns the copy sent.
// Errors: kNotFound (no such topic or record), kInvalidArgument (no original topic and no
// to_topic), kTransport / kTimeout (the send failed: nothing was re-sent, or the broker did
// not say).
Result<OutgoingRecord> RedriveOne(const ClientConfig& client, std::string_view group, std::int32_t partition,
                                  std::int64_t offset, std::string_view to_topic = {},
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The dead-letter view of a record read from a dead-letter topic: the diagnostics parsed from
// its headers.
DeadLetterRecord ToDeadLetterRecord(ReaderRecord&& record);

// "<group>.dlq.redrive": the consumer group that holds Redrive's cursor.
std::string RedriveGroup(std::string_view group);

}  // namespace kbus::kafka
