#include "job_index.hpp"

#include <mutex>

#include "kbus/envelope.hpp"
#include "kbus/json.hpp"

namespace kbus::console {

namespace {

std::string_view Find(const std::vector<HeaderView>& headers, std::string_view name) {
  std::string_view found;
  for (const auto& h : headers) {
    if (h.name == name) found = h.value;
  }
  return found;
}

constexpr std::size_t kMessageBytes = 200;  // a progress message, as shown
constexpr std::size_t kErrorBytes = 300;

}  // namespace

JobIndex::JobIndex(Limits limits) : limits_(limits) {}

void JobIndex::Finish(Entry& e, const JobKey& key) {
  e.exited = true;
  running_.erase({e.running_key, key});
  e.running_key = -1;
  if (e.outcome == "succeeded") {
    ++succeeded_;
  } else if (e.outcome != "superseded") {
    ++failed_;
  }
  finished_.push_back(key);
  while (finished_.size() > limits_.finished) {
    auto it = jobs_.find(finished_.front());
    // A key finished twice (an Exited redelivered) appears twice: only an exited entry goes.
    if (it != jobs_.end() && it->second.exited) jobs_.erase(it);
    finished_.pop_front();
  }
}

void JobIndex::Add(const std::string& topic, std::int32_t partition, std::int64_t offset, std::int64_t timestamp_ms,
                   std::string_view key, std::string_view value, const std::vector<HeaderView>& headers) {
  const std::string_view type = Find(headers, header::kType);
  enum { kStarted, kHeartbeat, kProgress, kExited } kind;
  if (type == "kbus.ProcessStarted") {
    kind = kStarted;
  } else if (type == "kbus.ProcessHeartbeat") {
    kind = kHeartbeat;
  } else if (type == "kbus.ProcessProgress") {
    kind = kProgress;
  } else if (type == "kbus.ProcessExited") {
    kind = kExited;
  } else {
    return;
  }
  JsonDocument doc;
  if (!doc.Parse(value).ok() || !doc.Root().IsObject()) return;
  const JsonValue root = doc.Root();
  JobKey id{std::string(StrMember(root, "job_id")), static_cast<int>(IntMember(root, "attempt", 0))};
  if (id.first.empty()) return;

  std::unique_lock lock(mu_);
  auto [it, fresh] = jobs_.try_emplace(id);
  Entry& e = it->second;
  if (fresh) {
    e.job_id = id.first;
    e.attempt = id.second;
    e.started_ms = timestamp_ms;
  }
  // A late heartbeat or a redelivered event of an attempt that ended changes nothing; only the
  // real exit of an attempt shown as superseded replaces that guess.
  const bool superseded = e.exited && e.outcome == "superseded";
  if (e.exited && !(superseded && kind == kExited)) return;
  e.topic = topic;
  e.key = std::string(key);
  if (auto wid = Find(headers, header::kWorkflowId); !wid.empty()) e.workflow_id = std::string(wid);
  e.updated_ms = std::max(e.updated_ms, timestamp_ms);
  switch (kind) {
    case kStarted:
      e.program = std::string(StrMember(root, "program"));
      e.host = std::string(StrMember(root, "host"));
      e.pid = IntMember(root, "pid", 0);
      e.started_ms = timestamp_ms;
      break;
    case kHeartbeat:
      if (auto p = IntMember(root, "percent", -1); p >= 0) e.percent = static_cast<int>(p);
      break;
    case kProgress:
      e.percent = static_cast<int>(IntMember(root, "percent", e.percent));
      e.message = ToValidUtf8(StrMember(root, "message"), kMessageBytes);
      break;
    case kExited:
      e.exited_ms = timestamp_ms;
      e.outcome = std::string(StrMember(root, "outcome"));
      e.exit_code = static_cast<int>(IntMember(root, "exit_code", -1));
      e.signal = static_cast<int>(IntMember(root, "signal", 0));
      e.duration_ms = IntMember(root, "duration", 0);
      e.error = ToValidUtf8(StrMember(root, "error"), kErrorBytes);
      e.has_result = !StrMember(root, "result").empty();
      e.partition = partition;
      e.offset = offset;
      if (e.outcome == "succeeded") e.percent = 100;
      break;
  }
  if (kind == kExited) {
    if (!superseded) {
      Finish(e, id);
    } else if (e.outcome == "succeeded") {
      ++succeeded_;  // already among the finished, where it stays
    } else {
      ++failed_;
    }
    return;
  }
  if (e.running_key != e.started_ms) {
    running_.erase({e.running_key, id});
    e.running_key = e.started_ms;
    running_.insert({e.started_ms, id});
  }
  if (kind == kStarted) {
    // An earlier attempt still shown as running was given up by whoever launched this one.
    std::vector<JobKey> earlier;
    for (auto it = jobs_.lower_bound({id.first, 0}); it != jobs_.end() && it->first.first == id.first; ++it) {
      if (it->first.second < id.second && !it->second.exited) earlier.push_back(it->first);
    }
    for (const JobKey& k : earlier) {
      auto it = jobs_.find(k);
      if (it == jobs_.end()) continue;
      it->second.outcome = "superseded";
      it->second.error = "attempt " + std::to_string(id.second) + " started before this one reported an exit";
      it->second.exited_ms = timestamp_ms;
      Finish(it->second, k);
    }
  }
}

void JobIndex::WriteEntry(JsonWriter& w, const Entry& e, std::int64_t now_ms) const {
  w.Key("job_id");
  w.String(e.job_id);
  w.Key("attempt");
  w.Int64(e.attempt);
  w.Key("program");
  w.String(e.program);
  w.Key("host");
  w.String(e.host);
  w.Key("pid");
  w.Int64(e.pid);
  w.Key("topic");
  w.String(e.topic);
  w.Key("workflow_id");
  w.String(e.workflow_id);
  // A workflow's jobs report on its input topic, NAME.in: NAME is the workflow.
  w.Key("workflow");
  w.String(e.topic.ends_with(".in") ? std::string_view(e.topic).substr(0, e.topic.size() - 3) : std::string_view());
  w.Key("state");
  w.String(e.exited ? "exited" : "running");
  w.Key("silent");
  w.Bool(!e.exited && now_ms - e.updated_ms > limits_.silent_after_ms);
  w.Key("percent");
  w.Int64(e.percent);
  w.Key("message");
  w.String(e.message);
  w.Key("started_ms");
  w.Int64(e.started_ms);
  w.Key("updated_ms");
  w.Int64(e.updated_ms);
  w.Key("elapsed_ms");
  w.Int64(e.exited ? (e.duration_ms > 0 ? e.duration_ms : e.exited_ms - e.started_ms)
                   : std::max<std::int64_t>(0, now_ms - e.started_ms));
  w.Key("outcome");
  w.String(e.outcome);
  w.Key("exit_code");
  w.Int64(e.exit_code);
  w.Key("signal");
  w.Int64(e.signal);
  w.Key("duration_ms");
  w.Int64(e.duration_ms);
  w.Key("exited_ms");
  w.Int64(e.exited_ms);
  w.Key("error");
  w.String(e.error);
  w.Key("has_result");
  w.Bool(e.has_result);
}

Answer JobIndex::Jobs(const Params& params, std::int64_t now_ms) const {
  Answer bad;
  auto page = ParsePage(params, &bad);
  if (!page.ok()) return bad;
  std::string state = OptionalParam(params, "state");
  if (state.empty()) state = "running";
  if (state != "running" && state != "finished" && state != "all") {
    return ErrorAnswer(400, "state must be running, finished or all, not '" + ToValidUtf8(state, 64) + "'", "state");
  }
  std::shared_lock lock(mu_);
  std::vector<const Entry*> chosen;
  std::size_t total = 0;
  auto take = [&](const JobKey& key) {
    if (total++ < page->offset || chosen.size() >= page->limit) return;
    if (auto it = jobs_.find(key); it != jobs_.end()) chosen.push_back(&it->second);
  };
  if (state != "finished") {
    for (const auto& [started, key] : running_) take(key);
  }
  if (state != "running") {
    // Newest exit first. An attempt finishes once (a later event of an exited attempt changes
    // nothing), so each key is in finished_ once: the page is found by index.
    const std::size_t skip = page->offset > total ? page->offset - total : 0;
    total += finished_.size();
    for (std::size_t i = skip; i < finished_.size() && chosen.size() < page->limit; ++i) {
      if (auto it = jobs_.find(finished_[finished_.size() - 1 - i]); it != jobs_.end()) chosen.push_back(&it->second);
    }
  }
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartArray();
  for (const Entry* e : chosen) {
    w.StartObject();
    WriteEntry(w, *e, now_ms);
    w.EndObject();
  }
  w.EndArray();
  return {200, PageJson(w.View(), total, *page)};
}

Answer JobIndex::Job(const Params& params, const RecordFetch& fetch, std::int64_t now_ms) const {
  Answer bad;
  const std::string id = RequiredParam(params, "id", &bad);
  if (id.empty()) return bad;
  bad.status = 200;
  auto attempt = IntParam(params, "attempt", 1, 1000000, &bad);
  if (bad.status != 200) return bad;
  std::vector<Entry> attempts;
  {
    std::shared_lock lock(mu_);
    for (auto it = jobs_.lower_bound({id, 0}); it != jobs_.end() && it->first.first == id; ++it) {
      attempts.push_back(it->second);
    }
  }
  if (attempts.empty()) {
    return ErrorAnswer(404, "no job '" + ToValidUtf8(id, 200) +
                                "': no launcher event names it (or it finished long ago and was forgotten)");
  }
  const Entry* chosen = &attempts.back();
  if (attempt) {
    chosen = nullptr;
    for (const Entry& e : attempts) {
      if (e.attempt == *attempt) chosen = &e;
    }
    if (!chosen) {
      return ErrorAnswer(404, "job '" + ToValidUtf8(id, 200) + "' has no attempt " + std::to_string(*attempt));
    }
  }
  std::string result_json, stderr_tail;
  if (fetch && chosen->exited && chosen->offset >= 0) {
    if (auto record = fetch(chosen->topic, chosen->partition, chosen->offset); record.ok()) {
      JsonDocument doc;
      if (doc.Parse(*record).ok() && doc.Root().IsObject()) {
        result_json = std::string(StrMember(doc.Root(), "result"));
        stderr_tail = std::string(StrMember(doc.Root(), "stderr_tail"));
      }
    }
  }
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  WriteEntry(w, *chosen, now_ms);
  w.Key("result");
  if (result_json.empty()) {
    w.Null();
  } else {
    WriteJsonOrString(w, result_json);
  }
  w.Key("stderr_tail");
  w.String(stderr_tail);
  w.Key("attempts");
  w.StartArray();
  for (const Entry& e : attempts) {
    w.StartObject();
    WriteEntry(w, e, now_ms);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return {200, w.Take()};
}

std::optional<std::string> JobIndex::LaunchKey(const std::string& job_id) const {
  std::shared_lock lock(mu_);
  auto it = jobs_.lower_bound({job_id, 0});
  if (it == jobs_.end() || it->first.first != job_id) return std::nullopt;
  return it->second.key;
}

JobIndex::Counts JobIndex::Totals() const {
  std::shared_lock lock(mu_);
  return {running_.size(), succeeded_, failed_};
}

std::size_t JobIndex::size() const {
  std::shared_lock lock(mu_);
  return jobs_.size();
}

}  // namespace kbus::console
