#pragma once
// Reading a topic for `kbus tail` and `kbus watch`: every partition from its beginning or end
// and no commits, or as a member of a consumer group that commits what was read. Thread safety:
// on the calling thread only; a signal (InstallStopSignals) ends the reading.

#include <functional>
#include <string>

#include "kbus/kafka/config.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/result.hpp"

namespace kbus::cli {

struct ReadOptions {
  std::string topic;
  bool from_end = false;     // start at the end, not the beginning; in a group, only where
                             // nothing was committed yet
  std::string group;         // empty: read every partition, commit nothing
  long long timeout_ms = 0;  // stop after this long without a record; 0: no idle limit
};

// Hands each record to `on_record` until it returns false, a signal, or `timeout_ms` without a
// record (then *idle is set, if given). In a group, a record counts as read (and is committed)
// once `on_record` returned: at-least-once output. Errors: the topic does not exist (kNotFound,
// after up to 10 s of asking a broker that may have just started), a broker or commit failure.
Status ReadTopic(const ReadOptions& options, const kafka::ClientConfig& client,
                 const std::function<bool(const kafka::ReaderRecord&)>& on_record,
                 bool* idle = nullptr);

}  // namespace kbus::cli
