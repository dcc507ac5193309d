#pragma once
// The console's readers: a TopicFollower reads one topic from its beginning and keeps following
// it, on a thread of its own; ReadOne reads one record back for a detail view.
//
// Thread safety: a follower's accessors may be called from any thread; `on` runs on the
// follower's thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "kbus/kafka/config.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/result.hpp"

namespace kbus::console {

class TopicFollower {
 public:
  using OnRecord = std::function<void(kafka::ReaderRecord&&)>;
  TopicFollower(kafka::ClientConfig client, std::string topic, OnRecord on);
  ~TopicFollower();  // stops reading and joins the thread
  TopicFollower(const TopicFollower&) = delete;
  TopicFollower& operator=(const TopicFollower&) = delete;

  const std::string& topic() const { return topic_; }
  // True once every partition was read up to the end it had when reading began.
  bool caught_up() const { return caught_up_.load(); }
  std::uint64_t records() const { return records_.load(); }
  // Why reading stopped or is retrying; empty while all is well.
  std::string error() const;

 private:
  void Run();
  void SetError(std::string error);

  kafka::ClientConfig client_;
  std::string topic_;
  OnRecord on_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> caught_up_{false};
  std::atomic<std::uint64_t> records_{0};
  mutable std::mutex mu_;
  std::string error_;
  std::thread thread_;
};

// The record at topic/partition/offset.
Result<kafka::ReaderRecord> ReadOne(const kafka::ClientConfig& client, const std::string& topic,
                                    std::int32_t partition, std::int64_t offset,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace kbus::console
