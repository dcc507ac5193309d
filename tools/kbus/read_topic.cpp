#include "read_topic.hpp"

#include <chrono>
#include <thread>
#include <vector>

#include "kbus/cli/options.hpp"

namespace kbus::cli {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(100);
constexpr auto kMetadataTimeout = std::chrono::seconds(10);

// Every partition the topic has now, from its beginning or its end, with no end. A broker that
// just started may not know the topic yet: asks again for up to kMetadataTimeout.
Status AssignAll(kafka::PartitionReader& reader, bool from_end) {
  const auto deadline = std::chrono::steady_clock::now() + kMetadataTimeout;
  for (;;) {
    auto partitions = reader.Partitions(kMetadataTimeout);
    if (partitions.ok()) {
      std::vector<kafka::PartitionSpan> spans;
      for (const auto& p : *partitions) {
        spans.push_back({.partition = p.partition,
                         .from = from_end ? kafka::PartitionSpan::kEnd : kafka::PartitionSpan::kBeginning});
      }
      return reader.Assign(spans);
    }
    if (partitions.error().code() != ErrorCode::kNotFound) return partitions.error();
    if (std::chrono::steady_clock::now() >= deadline || StopRequested()) {
      return Error(ErrorCode::kNotFound, partitions.error().message() +
                                             ": create it with `kbus topics create` (or `kbus broker --topic` on "
                                             "an embedded broker)");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace

Status ReadTopic(const ReadOptions& args, const kafka::ClientConfig& client,
                 const std::function<bool(const kafka::ReaderRecord&)>& on_record, bool* idle) {
  InstallStopSignals();
  const bool from_end = args.from_end;
  auto opened = kafka::PartitionReader::Open(
      client, {.topic = args.topic,
               .group = args.group,
               // In a group: where a partition without a committed offset starts.
               .reset = from_end ? kafka::OffsetReset::kLatest : kafka::OffsetReset::kEarliest});
  if (!opened.ok()) return opened.error();
  kafka::PartitionReader& reader = **opened;
  if (Status s = args.group.empty() ? AssignAll(reader, from_end) : reader.Subscribe(); !s.ok()) return s;
  auto last_record = std::chrono::steady_clock::now();
  while (!StopRequested()) {
    if (args.timeout_ms > 0 && std::chrono::steady_clock::now() - last_record >=
                                   std::chrono::milliseconds(args.timeout_ms)) {
      if (idle != nullptr) *idle = true;
      break;
    }
    auto next = reader.Next(kPollInterval);
    if (!next.ok()) return next.error();
    if (!*next) continue;
    const bool more = on_record(**next);
    last_record = std::chrono::steady_clock::now();
    reader.Done(**next);  // after on_record: at-least-once output
    if (!more) break;
  }
  if (Status s = reader.Close(); !s.ok()) {
    return Error(ErrorCode::kTransport, "cannot commit the printed records' offsets: " + s.error().message(), true);
  }
  return Ok();
}

}  // namespace kbus::cli
