#pragma once
// The console's view of dead letters: every record of every "<group>.dlq" topic, as a compact
// summary (ids, type, reason, the first 300 bytes of the error); headers and payload are read
// back from the topic when one dead letter is asked for. A dead letter is marked redriven once
// the console redrove it, or saw its redriven copy (kbus-redrive-of) on a topic it reads.
//
// Thread safety: every member may be called from any thread.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "answer.hpp"
#include "kbus/kafka/dead_letters.hpp"

namespace kbus::console {

class DeadLetterIndex {
 public:
  // One record of "<group>.dlq".
  void Add(const std::string& group, const kafka::DeadLetterRecord& record);
  // A copy with kbus-redrive-of "<dlq topic>/<partition>/<offset>" was seen, or sent.
  void MarkRedriven(std::string_view redrive_of);

  // GET /api/dead-letter-groups, /api/dead-letters, /api/dead-letter.
  Answer Groups() const;
  Answer List(const Params& params) const;
  Answer One(const Params& params, const std::function<Result<kafka::DeadLetterRecord>(
                                       const std::string& group, std::int32_t, std::int64_t)>& read) const;

  // The filter of a list or redrive request (reason, type, since_ms, until_ms); a 400 in *bad.
  static std::optional<kafka::DeadLetterFilter> ParseFilter(const Params& params, Answer* bad);

  bool HasGroup(const std::string& group) const;
  // Dead letters per group, per original type, per workflow (kbus-dlq-workflow).
  std::map<std::string, std::size_t> CountByType() const;
  // The original topics of each type's dead letters.
  std::map<std::string, std::set<std::string>> TopicsByType() const;
  std::map<std::string, std::size_t> CountByWorkflow() const;
  std::size_t size() const;

 private:
  struct Entry {
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string id, key, error;
    std::string_view type, reason, original_topic, workflow;  // interned
    int attempts = 0;
    std::int64_t at_ms = -1;
    bool redriven = false;
  };
  struct Group {
    std::string topic;
    std::vector<Entry> entries;  // in arrival order
    // Positions in `entries` by reason and by type, oldest first: a filtered page reads only
    // the dead letters of that reason or type, and their sizes are the counts per reason and
    // per type (kept as records arrive: counting per request walked every dead letter).
    std::map<std::string_view, std::vector<std::uint32_t>> by_reason, by_type;
    std::map<std::string_view, std::size_t> workflows;
    std::map<std::string_view, std::set<std::string_view>> type_topics;  // type -> original topics
    std::size_t redriven = 0;
  };
  static bool Matches(const Entry& e, const kafka::DeadLetterFilter& f);
  std::string_view Intern(std::string_view text);
  static void WriteEntry(JsonWriter& w, const std::string& group, const Entry& e);

  mutable std::shared_mutex mu_;
  std::map<std::string, Group, std::less<>> groups_;
  std::set<std::string, std::less<>> interned_;
  std::unordered_set<std::string> redriven_;  // "<topic>/<partition>/<offset>" seen before their record
};

}  // namespace kbus::console
