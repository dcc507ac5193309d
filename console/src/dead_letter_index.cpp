#include "dead_letter_index.hpp"

#include <mutex>

#include "kbus/dead_letter.hpp"
#include "kbus/json.hpp"

namespace kbus::console {

namespace {

constexpr std::size_t kErrorBytes = 300;

std::string Where(std::string_view topic, std::int32_t partition, std::int64_t offset) {
  return std::string(topic) + "/" + std::to_string(partition) + "/" + std::to_string(offset);
}

}  // namespace

std::string_view DeadLetterIndex::Intern(std::string_view text) {
  if (text.empty()) return {};
  auto it = interned_.find(text);
  if (it == interned_.end()) it = interned_.emplace(text).first;
  return *it;
}

void DeadLetterIndex::Add(const std::string& group, const kafka::DeadLetterRecord& r) {
  std::unique_lock lock(mu_);
  auto [it, fresh] = groups_.try_emplace(group);
  Group& g = it->second;
  if (fresh) g.topic = DeadLetterTopic(group);
  if (!g.entries.empty() && g.entries.back().partition == r.partition && g.entries.back().offset >= r.offset) {
    return;  // read twice (a reader that started over): already indexed
  }
  Entry e;
  e.partition = r.partition;
  e.offset = r.offset;
  e.id = r.id;
  e.key = ToValidUtf8(r.key, 200);
  e.error = ToValidUtf8(r.error, kErrorBytes);
  e.type = Intern(r.type);
  e.reason = Intern(r.reason);
  e.original_topic = Intern(r.original_topic);
  if (auto wf = r.FindHeader("kbus-dlq-workflow")) e.workflow = Intern(*wf);
  e.attempts = r.attempts;
  e.at_ms = r.at_ms;
  if (auto seen = redriven_.find(Where(g.topic, r.partition, r.offset)); seen != redriven_.end()) {
    e.redriven = true;
    ++g.redriven;
    redriven_.erase(seen);
  }
  const auto position = static_cast<std::uint32_t>(g.entries.size());
  g.by_reason[e.reason].push_back(position);
  g.by_type[e.type].push_back(position);
  if (!e.workflow.empty()) ++g.workflows[e.workflow];
  if (!e.type.empty() && !e.original_topic.empty()) g.type_topics[e.type].insert(e.original_topic);
  g.entries.push_back(std::move(e));
}

void DeadLetterIndex::MarkRedriven(std::string_view redrive_of) {
  // "<topic>/<partition>/<offset>"; the topic may itself hold slashes.
  const auto last = redrive_of.rfind('/');
  if (last == std::string_view::npos || last == 0) return;
  const auto mid = redrive_of.rfind('/', last - 1);
  if (mid == std::string_view::npos) return;
  const std::string_view topic = redrive_of.substr(0, mid);
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  try {
    partition = std::stoi(std::string(redrive_of.substr(mid + 1, last - mid - 1)));
    offset = std::stoll(std::string(redrive_of.substr(last + 1)));
  } catch (const std::exception&) {
    return;
  }
  std::unique_lock lock(mu_);
  for (auto& [name, g] : groups_) {
    if (g.topic != topic) continue;
    for (auto it = g.entries.rbegin(); it != g.entries.rend(); ++it) {
      if (it->partition == partition && it->offset == offset) {
        if (!it->redriven) {
          it->redriven = true;
          ++g.redriven;
        }
        return;
      }
    }
  }
  if (redriven_.size() < 100000) redriven_.insert(std::string(redrive_of));
}

void DeadLetterIndex::WriteEntry(JsonWriter& w, const std::string& group, const Entry& e) {
  w.Key("group");
  w.String(group);
  w.Key("partition");
  w.Int64(e.partition);
  w.Key("offset");
  w.Int64(e.offset);
  w.Key("id");
  w.String(e.id);
  w.Key("key");
  w.String(e.key);
  w.Key("type");
  w.String(e.type);
  w.Key("reason");
  w.String(e.reason);
  w.Key("error");
  w.String(e.error);
  w.Key("original_topic");
  w.String(e.original_topic);
  w.Key("workflow");
  w.String(e.workflow);
  w.Key("attempts");
  w.Int64(e.attempts);
  w.Key("at_ms");
  w.Int64(e.at_ms);
  w.Key("redriven");
  w.Bool(e.redriven);
}

Answer DeadLetterIndex::Groups() const {
  std::shared_lock lock(mu_);
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("items");
  w.StartArray();
  for (const auto& [name, g] : groups_) {
    w.StartObject();
    w.Key("group");
    w.String(name);
    w.Key("topic");
    w.String(g.topic);
    w.Key("count");
    w.Uint64(g.entries.size());
    w.Key("redriven");
    w.Uint64(g.redriven);
    w.Key("reasons");
    w.StartObject();
    for (const auto& [reason, positions] : g.by_reason) {
      w.Key(reason.empty() ? std::string_view("(none)") : reason);
      w.Uint64(positions.size());
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return {200, w.Take()};
}

std::optional<kafka::DeadLetterFilter> DeadLetterIndex::ParseFilter(const Params& params, Answer* bad) {
  kafka::DeadLetterFilter f;
  bad->status = 200;
  if (auto reason = OptionalParam(params, "reason"); !reason.empty()) f.reasons.push_back(reason);
  if (auto type = OptionalParam(params, "type"); !type.empty()) f.types.push_back(type);
  constexpr std::int64_t kMax = std::int64_t{1} << 52;
  f.since_ms = IntParam(params, "since_ms", 0, kMax, bad);
  if (bad->status != 200) return std::nullopt;
  f.until_ms = IntParam(params, "until_ms", 0, kMax, bad);
  if (bad->status != 200) return std::nullopt;
  if (f.since_ms && f.until_ms && *f.since_ms >= *f.until_ms) {
    *bad = ErrorAnswer(400, "since_ms must be before until_ms", "since_ms");
    return std::nullopt;
  }
  return f;
}

bool DeadLetterIndex::Matches(const Entry& e, const kafka::DeadLetterFilter& f) {
  if (!f.reasons.empty() && e.reason != f.reasons[0]) return false;
  if (!f.types.empty() && e.type != f.types[0]) return false;
  if (f.since_ms && (e.at_ms < 0 || e.at_ms < *f.since_ms)) return false;
  if (f.until_ms && (e.at_ms < 0 || e.at_ms >= *f.until_ms)) return false;
  return true;
}

Answer DeadLetterIndex::List(const Params& params) const {
  Answer bad;
  auto page = ParsePage(params, &bad);
  if (!page.ok()) return bad;
  const std::string group = RequiredParam(params, "group", &bad);
  if (group.empty()) return bad;
  auto filter = ParseFilter(params, &bad);
  if (!filter) return bad;
  std::shared_lock lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) {
    return ErrorAnswer(404, "no dead letters of group '" + ToValidUtf8(group, 200) + "': no topic " +
                                DeadLetterTopic(group) + " (GET /api/dead-letter-groups lists them)");
  }
  const Group& g = it->second;
  // The candidates: every dead letter, or the fewest that a reason or type filter allows.
  const std::vector<std::uint32_t>* candidates = nullptr;
  static const std::vector<std::uint32_t> kNone;
  auto narrow = [&](const std::map<std::string_view, std::vector<std::uint32_t>>& index, const std::string& value) {
    auto found = index.find(std::string_view(value));
    const std::vector<std::uint32_t>* list = found == index.end() ? &kNone : &found->second;
    if (!candidates || list->size() < candidates->size()) candidates = list;
  };
  if (!filter->reasons.empty()) narrow(g.by_reason, filter->reasons[0]);
  if (!filter->types.empty()) narrow(g.by_type, filter->types[0]);
  const std::size_t count = candidates ? candidates->size() : g.entries.size();
  auto at = [&](std::size_t i) -> const Entry& {  // newest first
    const std::size_t back = count - 1 - i;
    return g.entries[candidates ? (*candidates)[back] : back];
  };
  // When the candidates are exactly the matches (no filter, or one of reason and type alone),
  // the page is found by position and the total is their count; otherwise they are checked.
  const bool both = !filter->reasons.empty() && !filter->types.empty();
  const bool exact = !both && !filter->since_ms && !filter->until_ms;
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartArray();
  std::size_t total = 0;
  if (exact) {
    total = count;
    for (std::size_t i = page->offset; i < count && i < page->offset + page->limit; ++i) {
      w.StartObject();
      WriteEntry(w, group, at(i));
      w.EndObject();
    }
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      const Entry& e = at(i);
      if (!Matches(e, *filter)) continue;
      if (total >= page->offset && total < page->offset + page->limit) {
        w.StartObject();
        WriteEntry(w, group, e);
        w.EndObject();
      }
      ++total;
    }
  }
  w.EndArray();
  return {200, PageJson(w.View(), total, *page)};
}

Answer DeadLetterIndex::One(const Params& params,
                            const std::function<Result<kafka::DeadLetterRecord>(const std::string&, std::int32_t,
                                                                                std::int64_t)>& read) const {
  Answer bad;
  const std::string group = RequiredParam(params, "group", &bad);
  if (group.empty()) return bad;
  bad.status = 200;
  auto partition = IntParam(params, "partition", 0, 1 << 20, &bad);
  if (bad.status != 200) return bad;
  auto offset = IntParam(params, "offset", 0, std::int64_t{1} << 60, &bad);
  if (bad.status != 200) return bad;
  if (!partition) return ErrorAnswer(400, "the parameter partition is required", "partition");
  if (!offset) return ErrorAnswer(400, "the parameter offset is required", "offset");
  Entry entry;
  {
    std::shared_lock lock(mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return ErrorAnswer(404, "no dead letters of group '" + ToValidUtf8(group, 200) + "'");
    bool found = false;
    for (auto e = it->second.entries.rbegin(); e != it->second.entries.rend(); ++e) {
      if (e->partition == *partition && e->offset == *offset) {
        entry = *e;
        found = true;
        break;
      }
    }
    if (!found) {
      return ErrorAnswer(404, "no dead letter at " + Where(it->second.topic, static_cast<std::int32_t>(*partition),
                                                            *offset));
    }
  }
  auto record = read(group, static_cast<std::int32_t>(*partition), *offset);
  if (!record.ok()) {
    return ErrorAnswer(record.error().code() == ErrorCode::kNotFound ? 404 : 503, record.error().message());
  }
  entry.error = record->error;  // the whole text here, not the first 300 bytes
  entry.key = record->key;
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  WriteEntry(w, group, entry);
  w.Key("payload");
  w.String(record->payload);
  w.Key("headers");
  w.StartArray();
  for (const auto& h : record->headers) {
    w.StartArray();
    w.String(h.name);
    w.String(h.value);
    w.EndArray();
  }
  w.EndArray();
  w.EndObject();
  return {200, w.Take()};
}

bool DeadLetterIndex::HasGroup(const std::string& group) const {
  std::shared_lock lock(mu_);
  return groups_.contains(group);
}

std::map<std::string, std::size_t> DeadLetterIndex::CountByType() const {
  std::shared_lock lock(mu_);
  std::map<std::string, std::size_t> out;
  for (const auto& [name, g] : groups_) {
    for (const auto& [type, positions] : g.by_type) {
      out[std::string(type.empty() ? std::string_view("(none)") : type)] += positions.size();
    }
  }
  return out;
}

std::map<std::string, std::set<std::string>> DeadLetterIndex::TopicsByType() const {
  std::shared_lock lock(mu_);
  std::map<std::string, std::set<std::string>> out;
  for (const auto& [name, g] : groups_) {
    for (const auto& [type, topics] : g.type_topics) out[std::string(type)].insert(topics.begin(), topics.end());
  }
  return out;
}

std::map<std::string, std::size_t> DeadLetterIndex::CountByWorkflow() const {
  std::shared_lock lock(mu_);
  std::map<std::string, std::size_t> out;
  for (const auto& [name, g] : groups_) {
    for (const auto& [workflow, n] : g.workflows) out[std::string(workflow)] += n;
  }
  return out;
}

std::size_t DeadLetterIndex::size() const {
  std::shared_lock lock(mu_);
  std::size_t n = 0;
  for (const auto& [name, g] : groups_) n += g.entries.size();
  return n;
}

}  // namespace kbus::console
