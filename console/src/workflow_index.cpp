#include "workflow_index.hpp"

#include <algorithm>
#include <mutex>
#include <numeric>

#include "kbus/envelope.hpp"
#include "kbus/json.hpp"

namespace kbus::console {

namespace {

// Timeouts the host sets for itself (kbus.expire, kbus.result-expire) are not the workflow's.
constexpr std::string_view kHostTimeoutPrefix = "kbus.";

// The value of header `name` in a record's JSON headers ([["name","value"],...]).
std::string_view HeaderOf(const JsonValue& headers, std::string_view name) {
  std::string_view found;
  if (!headers.IsArray()) return found;
  for (std::size_t i = 0; i < headers.Size(); ++i) {
    JsonValue pair = headers.At(i);
    if (!pair.IsArray() || pair.Size() != 2) continue;
    auto n = pair.At(0).AsString();
    auto v = pair.At(1).AsString();
    if (n && v && *n == name) found = *v;
  }
  return found;
}

}  // namespace

void Durations::Add(std::int64_t ms) {
  ++count_;
  if (ring_.size() < capacity_) {
    ring_.push_back(ms);
    return;
  }
  ring_[next_] = ms;
  next_ = (next_ + 1) % capacity_;
}

std::optional<std::pair<double, std::int64_t>> Durations::MeanP95() const {
  if (ring_.empty()) return std::nullopt;
  std::vector<std::int64_t> sorted = ring_;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / static_cast<double>(sorted.size());
  // Nearest rank: the smallest sample with at least 95 % of the samples at or below it.
  const std::size_t rank = (sorted.size() * 95 + 99) / 100;
  return std::make_pair(mean, sorted[std::max<std::size_t>(rank, 1) - 1]);
}

WorkflowIndex::WorkflowIndex(Limits limits) : limits_(limits) {}

void WorkflowIndex::CountType(const Entry& e, int delta) {
  if (e.starter_type.empty()) return;
  TypeCounts& t = type_counts_[e.starter_type];
  auto add = [delta](std::size_t& n) { n = delta > 0 ? n + 1 : n - 1; };  // -1 only after a +1
  add(t.by_status[e.status]);
  if (!e.starter_topic.empty()) add(t.topics[e.starter_topic]);
}

std::string_view WorkflowIndex::Intern(std::string_view text) {
  if (text.empty()) return {};
  auto it = interned_.find(text);
  if (it == interned_.end()) it = interned_.emplace(text).first;
  return *it;
}

std::string_view WorkflowIndex::StatusName(Status s) {
  switch (s) {
    case kRunning: return "running";
    case kCompleted: return "completed";
    default: return "failed";
  }
}

void WorkflowIndex::Add(const std::string& topic, std::int32_t partition, std::int64_t offset,
                        std::optional<std::string_view> key, std::optional<std::string_view> value) {
  std::unique_lock lock(mu_);
  if (!value) {  // a tombstone: the instance's retention ended
    auto t = topic_workflow_.find(topic);
    if (t == topic_workflow_.end() || !key) return;
    auto w = workflows_.find(t->second);
    auto e = w->second.instances.find(std::string(*key));
    if (e == w->second.instances.end()) return;
    CountType(e->second, -1);
    Unorder(w->second, e->second);
    w->second.instances.erase(e);
    return;
  }
  JsonDocument doc;
  if (!doc.Parse(*value).ok() || !doc.Root().IsObject()) {
    ++bad_records_;
    return;
  }
  const JsonValue root = doc.Root();
  std::string id(StrMember(root, "id"));
  if (id.empty() && key) id = std::string(*key);
  if (id.empty()) {
    ++bad_records_;
    return;
  }
  std::string name(StrMember(root, "workflow"));
  if (name.empty()) name = topic.ends_with(".state") ? topic.substr(0, topic.size() - 6) : topic;
  topic_workflow_[topic] = name;
  auto [wit, added] = workflows_.try_emplace(name);
  Workflow& wf = wit->second;
  if (added) {
    wf.name = name;
    wf.topic = topic;
  }
  auto [eit, fresh] = wf.instances.try_emplace(id);
  Entry& e = eit->second;
  if (!fresh) {
    Unorder(wf, e);
    CountType(e, -1);
  }
  const Status before = fresh ? kStatuses : e.status;
  const int run_before = e.run;

  e.id = id;
  const std::string_view status = StrMember(root, "status");
  e.status = status == "completed" ? kCompleted : status == "failed" ? kFailed : kRunning;
  e.run = static_cast<int>(IntMember(root, "run", 1));
  e.version = static_cast<std::uint64_t>(IntMember(root, "version"));
  e.created_ms = IntMember(root, "created_ms");
  e.updated_ms = IntMember(root, "updated_ms");
  e.finished_ms = IntMember(root, "finished_ms");
  e.partition = partition;
  e.offset = offset;
  e.timeouts = 0;
  if (auto timeouts = root.Find("timeouts"); timeouts && timeouts->IsArray()) {
    for (std::size_t i = 0; i < timeouts->Size(); ++i) {
      if (!StrMember(timeouts->At(i), "name").starts_with(kHostTimeoutPrefix)) ++e.timeouts;
    }
  }
  auto result = root.Find("result");
  e.has_result = result && !result->IsNull();
  e.result_expires_ms = IntMember(root, "result_expires_ms");
  e.attempt = -1;
  e.phase = {};
  if (auto state = root.Find("state"); state && state->IsObject()) {
    e.attempt = static_cast<int>(IntMember(*state, "attempt", -1));
    e.phase = Intern(StrMember(*state, "phase"));
  }
  if (auto origin = root.Find("origin"); origin && origin->IsObject()) {
    if (auto headers = origin->Find("headers")) e.starter_type = Intern(HeaderOf(*headers, header::kType));
    e.starter_topic = Intern(StrMember(*origin, "topic"));
  }

  Step step;
  step.version = e.version;
  step.updated_ms = e.updated_ms;
  step.status = e.status;
  step.message_id = std::string(StrMember(root, "last_message"));
  if (auto outbox = root.Find("outbox"); outbox && outbox->IsArray()) {
    for (std::size_t i = 0; i < outbox->Size(); ++i) {
      if (auto headers = outbox->At(i).Find("headers")) step.sent.push_back(Intern(HeaderOf(*headers, header::kType)));
    }
  }
  if (e.run != run_before) e.steps.clear();  // a new run's steps start over
  if (e.steps.empty() || e.steps.back().version < step.version) e.steps.push_back(std::move(step));
  if (e.steps.size() > limits_.steps) e.steps.erase(e.steps.begin(), e.steps.end() - static_cast<std::ptrdiff_t>(limits_.steps));

  Order(wf, e);
  CountType(e, +1);
  if (e.status == kCompleted && (before != kCompleted || e.run != run_before) && e.finished_ms >= e.created_ms) {
    wf.durations.Add(e.finished_ms - e.created_ms);
    if (!e.starter_type.empty()) type_durations_[std::string(e.starter_type)].Add(e.finished_ms - e.created_ms);
  }
}

void WorkflowIndex::Order(Workflow& wf, const Entry& e) {
  wf.by_status[e.status].insert({-e.updated_ms, e.id});
  wf.all.insert({-e.updated_ms, e.id});
}

void WorkflowIndex::Unorder(Workflow& wf, const Entry& e) {
  wf.by_status[e.status].erase({-e.updated_ms, e.id});
  wf.all.erase({-e.updated_ms, e.id});
}

void WorkflowIndex::WriteSummary(JsonWriter& w, const std::string& workflow, const Entry& e) {
  w.Key("workflow");
  w.String(workflow);
  w.Key("id");
  w.String(e.id);
  w.Key("status");
  w.String(StatusName(e.status));
  w.Key("run");
  w.Int64(e.run);
  w.Key("version");
  w.Uint64(e.version);
  w.Key("created_ms");
  w.Int64(e.created_ms);
  w.Key("updated_ms");
  w.Int64(e.updated_ms);
  w.Key("finished_ms");
  w.Int64(e.finished_ms);
  w.Key("attempt");
  WriteIntOrNull(w, e.attempt >= 0 ? std::optional<std::int64_t>(e.attempt) : std::nullopt);
  w.Key("phase");
  if (!e.phase.empty()) {
    w.String(e.phase);
  } else {
    w.Null();
  }
  w.Key("type");
  w.String(e.starter_type);
  w.Key("has_result");
  w.Bool(e.has_result);
}

Answer WorkflowIndex::Workflows() const {
  std::shared_lock lock(mu_);
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("items");
  w.StartArray();
  for (const auto& [name, wf] : workflows_) {
    w.StartObject();
    w.Key("name");
    w.String(name);
    w.Key("state_topic");
    w.String(wf.topic);
    w.Key("running");
    w.Uint64(wf.by_status[kRunning].size());
    w.Key("completed");
    w.Uint64(wf.by_status[kCompleted].size());
    w.Key("failed");
    w.Uint64(wf.by_status[kFailed].size());
    w.Key("total");
    w.Uint64(wf.instances.size());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return {200, w.Take()};
}

const WorkflowIndex::Workflow* WorkflowIndex::Find(const Params& params, Answer* bad, std::string* name) const {
  *name = RequiredParam(params, "workflow", bad);
  if (name->empty()) return nullptr;
  auto it = workflows_.find(*name);
  if (it == workflows_.end()) {
    *bad = ErrorAnswer(404, "no workflow '" + *name + "': the console knows " + std::to_string(workflows_.size()) +
                                " (GET /api/workflows lists them)");
    return nullptr;
  }
  return &it->second;
}

Answer WorkflowIndex::Instances(const Params& params) const {
  Answer bad;
  auto page = ParsePage(params, &bad);
  if (!page.ok()) return bad;
  const std::string status = OptionalParam(params, "status");
  std::vector<Status> wanted;
  if (status.empty()) {
    wanted = {kRunning, kCompleted, kFailed};
  } else if (status == "running") {
    wanted = {kRunning};
  } else if (status == "completed") {
    wanted = {kCompleted};
  } else if (status == "failed") {
    wanted = {kFailed};
  } else {
    return ErrorAnswer(400, "status must be running, completed or failed, not '" + ToValidUtf8(status, 64) + "'",
                       "status");
  }
  std::shared_lock lock(mu_);
  std::string name;
  const Workflow* wf = Find(params, &bad, &name);
  if (!wf) return bad;
  std::size_t total = 0;
  for (Status s : wanted) total += wf->by_status[s].size();
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartArray();
  auto emit = [&](const std::string& id) {
    w.StartObject();
    const Entry& e = wf->instances.at(id);
    WriteSummary(w, name, e);
    w.Key("timeouts");
    w.Int64(e.timeouts);
    w.EndObject();
  };
  const OrderedSet& set = wanted.size() == 1 ? wf->by_status[wanted[0]] : wf->all;
  auto it = set.find_by_order(std::min(page->offset, set.size()));
  for (std::size_t n = 0; it != set.end() && n < page->limit; ++it, ++n) emit(it->second);
  w.EndArray();
  return {200, PageJson(w.View(), total, *page)};
}

std::optional<WorkflowIndex::Found> WorkflowIndex::Lookup(const Params& params, Answer* bad) const {
  std::shared_lock lock(mu_);
  Found f;
  const Workflow* wf = Find(params, bad, &f.name);
  if (!wf) return std::nullopt;
  f.id = RequiredParam(params, "id", bad);
  if (f.id.empty()) return std::nullopt;
  auto it = wf->instances.find(f.id);
  if (it == wf->instances.end()) {
    *bad = ErrorAnswer(404, "no instance '" + ToValidUtf8(f.id, 200) + "' of workflow '" + f.name +
                                "': never started, or removed when its retention ended");
    return std::nullopt;
  }
  f.entry = it->second;
  f.topic = wf->topic;
  return f;
}

Answer WorkflowIndex::Instance(const Params& params, const RecordFetch& fetch) const {
  Answer bad;
  auto found = Lookup(params, &bad);
  if (!found) return bad;
  const std::string& name = found->name;
  const Entry& e = found->entry;
  const std::string& topic = found->topic;
  auto record = fetch(topic, e.partition, e.offset);
  JsonDocument doc;
  const bool have = record.ok() && doc.Parse(*record).ok() && doc.Root().IsObject();
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  WriteSummary(w, name, e);
  w.Key("partition");
  w.Int64(e.partition);
  w.Key("offset");
  w.Int64(e.offset);
  w.Key("steps");
  w.StartArray();
  for (const Step& s : e.steps) {
    w.StartObject();
    w.Key("version");
    w.Uint64(s.version);
    w.Key("updated_ms");
    w.Int64(s.updated_ms);
    w.Key("status");
    w.String(StatusName(s.status));
    w.Key("message_id");
    w.String(s.message_id);
    w.Key("sent");
    w.StartArray();
    for (auto t : s.sent) w.String(t);
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  if (!have) {
    w.Key("record_error");
    w.String(record.ok() ? "the latest record does not parse" : record.error().message());
  }
  const JsonValue root = doc.Root();
  w.Key("timeouts");
  w.StartArray();
  if (have) {
    if (auto timeouts = root.Find("timeouts"); timeouts && timeouts->IsArray()) {
      for (std::size_t i = 0; i < timeouts->Size(); ++i) {
        const JsonValue t = timeouts->At(i);
        w.StartObject();
        w.Key("name");
        w.String(StrMember(t, "name"));
        w.Key("due_ms");
        w.Int64(IntMember(t, "due_ms"));
        w.EndObject();
      }
    }
  }
  w.EndArray();
  w.Key("state");
  auto state = have ? root.Find("state") : std::nullopt;
  if (state) {
    w.RawValue(state->ToJson());
  } else {
    w.Null();
  }
  w.Key("history");
  w.StartArray();
  if (state && state->IsObject()) {
    if (auto history = state->Find("history"); history && history->IsArray()) {
      for (std::size_t i = 0; i < history->Size(); ++i) {
        if (auto line = history->At(i).AsString()) w.String(*line);
      }
    }
  }
  w.EndArray();
  w.Key("origin");
  auto origin = have ? root.Find("origin") : std::nullopt;
  if (origin && origin->IsObject()) {
    w.StartObject();
    w.Key("topic");
    w.String(StrMember(*origin, "topic"));
    w.Key("partition");
    w.Int64(IntMember(*origin, "partition", -1));
    w.Key("offset");
    w.Int64(IntMember(*origin, "offset", -1));
    w.Key("type");
    w.String(e.starter_type);
    w.EndObject();
  } else {
    w.Null();
  }
  w.Key("correlation_id");
  w.String(have ? StrMember(root, "correlation_id") : std::string_view());
  w.Key("result");
  auto result = have ? root.Find("result") : std::nullopt;
  if (result) {
    w.RawValue(result->ToJson());
  } else {
    w.Null();
  }
  w.Key("result_expires_ms");
  w.Int64(e.result_expires_ms);
  w.EndObject();
  return {200, w.Take()};
}

Answer WorkflowIndex::ResultOf(const Params& params, const RecordFetch& fetch, std::int64_t now_ms) const {
  Answer bad;
  auto found = Lookup(params, &bad);
  if (!found) return bad;
  const std::string& name = found->name;
  const std::string& id = found->id;
  const Entry& e = found->entry;
  const std::string& topic = found->topic;
  const std::string who = "instance '" + ToValidUtf8(id, 200) + "' of workflow '" + name + "'";
  if (e.status == kRunning) return ErrorAnswer(404, who + " is still running: no result yet");
  if (!e.has_result) return ErrorAnswer(404, who + " " + std::string(StatusName(e.status)) + " without a result");
  if (e.result_expires_ms > 0 && now_ms >= e.result_expires_ms) {
    return ErrorAnswer(404, who + ": its result expired at " + std::to_string(e.result_expires_ms) +
                                " (Unix ms; the workflow's result_retention)");
  }
  auto record = fetch(topic, e.partition, e.offset);
  if (!record.ok()) return ErrorAnswer(503, "cannot read the state record of " + who + ": " + record.error().message());
  JsonDocument doc;
  if (!doc.Parse(*record).ok() || !doc.Root().IsObject()) {
    return ErrorAnswer(503, "the state record of " + who + " does not parse");
  }
  auto result = doc.Root().Find("result");
  if (!result || result->IsNull()) return ErrorAnswer(404, who + " has no result any more");
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("workflow");
  w.String(name);
  w.Key("id");
  w.String(id);
  w.Key("status");
  w.String(StatusName(e.status));
  w.Key("result");
  w.RawValue(result->ToJson());
  w.Key("expires_ms");
  w.Int64(e.result_expires_ms);
  w.EndObject();
  return {200, w.Take()};
}

std::map<std::string, WorkflowIndex::Counts> WorkflowIndex::ByWorkflow() const {
  std::shared_lock lock(mu_);
  std::map<std::string, Counts> out;
  for (const auto& [name, wf] : workflows_) {
    Counts& c = out[name];
    c.running = wf.by_status[kRunning].size();
    c.completed = wf.by_status[kCompleted].size();
    c.failed = wf.by_status[kFailed].size();
    c.mean_p95 = wf.durations.MeanP95();
  }
  return out;
}

std::map<std::string, WorkflowIndex::Counts> WorkflowIndex::ByType() const {
  std::shared_lock lock(mu_);
  std::map<std::string, Counts> out;
  for (const auto& [type, t] : type_counts_) {
    const auto& n = t.by_status;
    if (n[kRunning] + n[kCompleted] + n[kFailed] == 0) continue;  // every instance of it removed
    Counts& c = out[std::string(type)];
    c.running = n[kRunning];
    c.completed = n[kCompleted];
    c.failed = n[kFailed];
    for (const auto& [topic, count] : t.topics) {
      if (count > 0) c.topics.emplace(topic);
    }
    if (auto d = type_durations_.find(type); d != type_durations_.end()) c.mean_p95 = d->second.MeanP95();
  }
  return out;
}

std::size_t WorkflowIndex::size() const {
  std::shared_lock lock(mu_);
  std::size_t n = 0;
  for (const auto& [name, wf] : workflows_) n += wf.instances.size();
  return n;
}

std::size_t WorkflowIndex::bad_records() const {
  std::shared_lock lock(mu_);
  return bad_records_;
}

}  // namespace kbus::console
