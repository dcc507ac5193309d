#include "topic_readers.hpp"

#include <optional>
#include <vector>

#include "kbus/log.hpp"

namespace kbus::console {

using std::chrono::milliseconds;

TopicFollower::TopicFollower(kafka::ClientConfig client, std::string topic, OnRecord on)
    : client_(std::move(client)), topic_(std::move(topic)), on_(std::move(on)) {
  thread_ = std::thread([this] { Run(); });
}

TopicFollower::~TopicFollower() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::string TopicFollower::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

void TopicFollower::SetError(std::string error) {
  std::lock_guard lock(mu_);
  error_ = std::move(error);
}

void TopicFollower::Run() {
  // Each pass opens a reader and follows the topic from where the last pass stopped; a pass ends
  // on an error the reader does not ride out, and the next begins a second later.
  std::map<std::int32_t, std::int64_t> next;  // the next offset to read, per partition
  std::map<std::int32_t, std::int64_t> end;   // where "caught up" is, from the first pass
  bool have_end = false;
  while (!stop_.load()) {
    auto reader = kafka::PartitionReader::Open(client_, {.topic = topic_, .reset = kafka::OffsetReset::kEarliest});
    if (!reader.ok()) {
      SetError(reader.error().message());
      return;  // a refused property: trying again changes nothing
    }
    auto partitions = (*reader)->Partitions(std::chrono::seconds(5));
    if (!partitions.ok()) {
      SetError(partitions.error().message());
      for (int i = 0; i < 10 && !stop_.load(); ++i) std::this_thread::sleep_for(milliseconds(100));
      continue;
    }
    std::vector<kafka::PartitionSpan> spans;
    for (const auto& p : *partitions) {
      if (!have_end) end[p.partition] = p.high;
      auto it = next.find(p.partition);
      spans.push_back({.partition = p.partition, .from = it == next.end() ? kafka::PartitionSpan::kBeginning : it->second});
    }
    have_end = true;
    if (Status s = (*reader)->Assign(spans); !s.ok()) {
      SetError(s.error().message());
      continue;
    }
    SetError({});
    auto check_caught_up = [&] {
      for (const auto& [p, high] : end) {
        auto it = next.find(p);
        if (high > 0 && (it == next.end() || it->second < high)) return false;
      }
      return true;
    };
    caught_up_.store(caught_up_.load() || check_caught_up());
    while (!stop_.load()) {
      auto record = (*reader)->Next(milliseconds(200));
      if (!record.ok()) {
        SetError(record.error().message());
        Log(LogLevel::kWarn, "console: reading a topic failed; starting over in a second",
            {{"topic", topic_}, {"error", record.error().message()}});
        for (int i = 0; i < 10 && !stop_.load(); ++i) std::this_thread::sleep_for(milliseconds(100));
        break;
      }
      if (!*record) {
        if (!caught_up_.load() && check_caught_up()) caught_up_.store(true);
        continue;
      }
      next[(*record)->partition] = (*record)->offset + 1;
      records_.fetch_add(1);
      on_(std::move(**record));
      if (!caught_up_.load() && check_caught_up()) caught_up_.store(true);
    }
  }
}

Result<kafka::ReaderRecord> ReadOne(const kafka::ClientConfig& client, const std::string& topic,
                                    std::int32_t partition, std::int64_t offset, milliseconds timeout) {
  auto reader = kafka::PartitionReader::Open(client, {.topic = topic});
  if (!reader.ok()) return reader.error();
  if (Status s = (*reader)->Assign({{.partition = partition, .from = offset, .to = offset + 1}}); !s.ok()) {
    return s.error();
  }
  std::optional<kafka::ReaderRecord> found;
  Status s = (*reader)->ReadToEnd(timeout, [&](kafka::ReaderRecord&& r) {
    if (r.offset == offset) found = std::move(r);
    return false;
  });
  if (!s.ok()) return s.error();
  if (!found) {
    return Error(ErrorCode::kNotFound, "no record at " + topic + "/" + std::to_string(partition) + "/" +
                                           std::to_string(offset) + " (compacted away?)");
  }
  return std::move(*found);
}

}  // namespace kbus::console
