#include "kbus/console/console.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "answer.hpp"
#include "assets.hpp"
#include "dead_letter_index.hpp"
#include "job_index.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"
#include "kbus/schedules/client.hpp"
#include "topic_readers.hpp"
#include "workflow_index.hpp"

namespace kbus::console {

namespace {

using Clock = std::chrono::system_clock;
using std::chrono::milliseconds;

std::int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
}

// Equal strings, in a time that does not depend on where they differ.
bool SameSecret(std::string_view given, std::string_view secret) {
  if (secret.empty()) return false;
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i] ^ secret[i % secret.size()]);
  }
  return diff == 0;
}

const char* kJson = "application/json";

}  // namespace

struct Console::Impl {
  ConsoleConfig config;
  WorkflowIndex workflows;
  JobIndex jobs;
  DeadLetterIndex dead_letters;
  httplib::Server http;
  std::thread http_thread;
  std::atomic<bool> listening_ended{false};
  int port = 0;
  socket_t listen_socket = INVALID_SOCKET;  // set while binding, on the constructor's thread
  std::int64_t started_ms = NowMs();

  // Readers, by topic; started by the discovery thread.
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<TopicFollower>> followers;
  std::set<std::string> initial;  // the topics of the first discovery: caught_up waits for these
  bool discovered = false;
  bool broker_ok = false;
  std::string broker_error = "not connected yet";
  std::vector<kafka::TopicInfo> listed;  // every topic the broker listed
  std::string schedules_json = "{\"items\":[]}";
  std::map<std::string, std::map<std::string, std::int64_t>> lag;  // group -> topic -> lag

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread discovery;
  std::thread lagger;

  std::mutex producer_mu;
  std::unique_ptr<kafka::Producer> producer;

  explicit Impl(ConsoleConfig c)
      : config(std::move(c)),
        workflows(WorkflowIndex::Limits{.steps = config.steps_per_instance}),
        jobs(JobIndex::Limits{.finished = config.finished_jobs,
                              .silent_after_ms = config.silent_after.count()}) {}

  // ---- reading

  enum class Kind { kState, kEvents, kDeadLetters };

  void Follow(const std::string& topic, Kind kind) {
    if (followers.contains(topic)) return;
    TopicFollower::OnRecord on;
    switch (kind) {
      case Kind::kState:
        on = [this, topic](kafka::ReaderRecord&& r) {
          std::optional<std::string_view> key, value;
          if (r.key) key = *r.key;
          if (r.payload) value = *r.payload;
          workflows.Add(topic, r.partition, r.offset, key, value);
        };
        break;
      case Kind::kEvents:
        on = [this, topic](kafka::ReaderRecord&& r) {
          if (!r.payload) return;
          const auto headers = r.HeaderViews();
          for (const auto& h : headers) {
            if (h.name == header::kRedriveOf) dead_letters.MarkRedriven(h.value);
          }
          jobs.Add(topic, r.partition, r.offset, r.timestamp_ms, r.key.value_or(""), *r.payload, headers);
        };
        break;
      case Kind::kDeadLetters: {
        std::string group = topic.substr(0, topic.size() - 4);
        on = [this, group](kafka::ReaderRecord&& r) {
          dead_letters.Add(group, kafka::ToDeadLetterRecord(std::move(r)));
        };
        break;
      }
    }
    followers.emplace(topic, std::make_unique<TopicFollower>(config.client, topic, std::move(on)));
  }

  void Discover() {
    auto listed_now = kafka::ListTopics(config.client, milliseconds(5000));
    std::lock_guard lock(mu);
    if (!listed_now.ok()) {
      broker_ok = false;
      broker_error = listed_now.error().message();
      return;
    }
    broker_ok = true;
    broker_error.clear();
    std::set<std::string> names;
    listed.clear();
    for (const auto& t : *listed_now) names.insert(t.name);
    listed = *listed_now;
    auto want = [&](const std::string& topic, Kind kind) {
      if (!names.contains(topic)) return;
      if (!discovered) initial.insert(topic);
      Follow(topic, kind);
    };
    for (const auto& t : config.state_topics) want(t, Kind::kState);
    for (const auto& t : config.event_topics) want(t, Kind::kEvents);
    for (const auto& g : config.dlq_groups) want(DeadLetterTopic(g), Kind::kDeadLetters);
    if (config.discover) {
      for (const auto& t : names) {
        if (t.starts_with("__") || !t.starts_with(config.topic_prefix)) continue;
        if (t.ends_with(".state")) {
          want(t, Kind::kState);
          want(t.substr(0, t.size() - 6) + ".in", Kind::kEvents);  // a workflow's launcher events
        } else if (t.ends_with(".dlq")) {
          want(t, Kind::kDeadLetters);
        } else if (t == handlers::kLauncherEventsTopic) {
          want(t, Kind::kEvents);
        }
      }
    }
    discovered = true;
  }

  void RefreshSchedules() {
    {
      std::lock_guard lock(mu);
      if (!Listed(config.schedules_topic)) return;
    }
    auto views = schedules::ListSchedules(config.client, config.schedules_topic, milliseconds(10000));
    if (!views.ok()) return;
    const auto now = std::chrono::time_point_cast<milliseconds>(Clock::now());
    JsonWriter w(InvalidUtf8::kReplace);
    w.StartObject();
    w.Key("items");
    w.StartArray();
    for (const auto& v : *views) {
      const auto& spec = v.spec;
      w.StartObject();
      w.Key("name");
      w.String(spec.id);
      w.Key("calendar");
      if (!spec.cron.empty()) {
        w.String(spec.cron + " (" + spec.time_zone + ")");
      } else {
        w.String("every " + std::to_string(spec.every.count() / 1000) + "s");
      }
      w.Key("type");
      w.String(spec.type);
      w.Key("topic");
      w.String(spec.topic);
      w.Key("paused");
      w.Bool(spec.paused);
      w.Key("note");
      w.String(spec.note);
      w.Key("next_ms");
      auto next = spec.paused ? std::vector<schedules::TimePoint>{} : schedules::NextFireTimes(spec, now, 1);
      WriteIntOrNull(w, next.empty() ? std::nullopt : std::optional<std::int64_t>(next.front().time_since_epoch().count()));
      w.Key("fired");
      w.Uint64(v.state.fired);
      w.Key("running");
      w.Uint64(v.state.running.size());
      w.Key("last_outcome");
      w.String(v.state.recent.empty() ? std::string() : v.state.recent.back().outcome);
      w.Key("waiting_requests");
      w.Uint64(v.waiting.size());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    std::lock_guard lock(mu);
    schedules_json = w.Take();
  }

  // Lag of each group on every topic it committed offsets for: one request pair per group.
  void RefreshLag() {
    std::set<std::string> groups(config.lag_groups.begin(), config.lag_groups.end());
    std::vector<kafka::TopicInfo> topics;
    {
      std::lock_guard lock(mu);
      for (const auto& t : listed) {
        if (!t.name.starts_with(config.topic_prefix)) continue;
        if (t.name.ends_with(".dlq")) groups.insert(t.name.substr(0, t.name.size() - 4));
        if (t.name.starts_with("__") || t.name.ends_with(".state") || t.name.ends_with(".dlq")) continue;
        topics.push_back(t);
      }
    }
    std::map<std::string, std::map<std::string, std::int64_t>> found;
    for (const auto& g : groups) {
      if (Stopping()) return;
      auto lag_of = kafka::GroupLag(config.client, g, topics, milliseconds(5000));
      if (lag_of.ok() && !lag_of->empty()) found[g] = std::move(*lag_of);
    }
    std::lock_guard lock(mu);
    lag = std::move(found);
  }

  // Whether the broker listed `topic` at the last look; `mu` held.
  bool Listed(const std::string& topic) const {
    return std::any_of(listed.begin(), listed.end(), [&](const kafka::TopicInfo& t) { return t.name == topic; });
  }

  bool Stopping() {
    std::lock_guard lock(stop_mu);
    return stopping;
  }

  // Waits `d` or until the console stops; false when it stops.
  bool Wait(milliseconds d) {
    std::unique_lock lock(stop_mu);
    return !stop_cv.wait_for(lock, d, [this] { return stopping; });
  }

  bool CaughtUp() const {
    std::lock_guard lock(mu);
    return CaughtUpLocked();
  }

  // Every topic of the first discovery read to the end it had then; `mu` held.
  bool CaughtUpLocked() const {
    if (!discovered) return false;
    for (const auto& t : initial) {
      auto it = followers.find(t);
      if (it != followers.end() && !it->second->caught_up()) return false;
    }
    return true;
  }

  // ---- reading back

  Result<std::string> FetchValue(const std::string& topic, std::int32_t partition, std::int64_t offset) const {
    auto r = ReadOne(config.client, topic, partition, offset);
    if (!r.ok()) return r.error();
    if (!r->payload) return Error(ErrorCode::kNotFound, "the record was deleted (a tombstone)");
    return std::move(*r->payload);
  }

  // ---- the API

  Answer StatusAnswer() const {
    JsonWriter w(InvalidUtf8::kReplace);
    std::lock_guard lock(mu);
    w.StartObject();
    w.Key("broker");
    w.StartObject();
    w.Key("ok");
    w.Bool(broker_ok);
    w.Key("error");
    w.String(broker_error);
    w.EndObject();
    w.Key("read_only");
    w.Bool(config.token.empty());
    w.Key("now_ms");
    w.Int64(NowMs());
    w.Key("started_ms");
    w.Int64(started_ms);
    w.Key("caught_up");
    w.Bool(CaughtUpLocked());
    w.Key("topics");
    w.StartObject();
    for (const char* kind : {"state", "events", "dlq"}) {
      w.Key(kind);
      w.StartArray();
      for (const auto& [topic, f] : followers) {
        const bool state = topic.ends_with(".state"), dlq = topic.ends_with(".dlq");
        if ((kind[0] == 's' && state) || (kind[0] == 'd' && dlq) || (kind[0] == 'e' && !state && !dlq)) {
          w.String(topic);
        }
      }
      w.EndArray();
    }
    w.Key("schedules");
    w.String(Listed(config.schedules_topic) ? config.schedules_topic : std::string());
    w.EndObject();
    w.Key("readers");
    w.StartArray();
    for (const auto& [topic, f] : followers) {
      w.StartObject();
      w.Key("topic");
      w.String(topic);
      w.Key("records");
      w.Uint64(f->records());
      w.Key("caught_up");
      w.Bool(f->caught_up());
      w.Key("error");
      w.String(f->error());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return {200, w.Take()};
  }

  Answer Totals() const {
    const auto by_workflow = workflows.ByWorkflow();
    const auto by_type = workflows.ByType();
    const auto dead_by_type = dead_letters.CountByType();
    const auto dead_topics = dead_letters.TopicsByType();
    const auto dead_by_workflow = dead_letters.CountByWorkflow();
    const auto job_counts = jobs.Totals();
    std::map<std::string, std::map<std::string, std::int64_t>> lag_now;
    {
      std::lock_guard lock(mu);
      lag_now = lag;
    }
    auto backlog_of = [&](const std::string& topic) -> std::optional<std::int64_t> {
      std::optional<std::int64_t> out;
      for (const auto& [g, topics] : lag_now) {
        if (auto it = topics.find(topic); it != topics.end()) out = std::max(out.value_or(0), it->second);
      }
      return out;
    };
    auto write_mean = [](JsonWriter& w, const WorkflowIndex::Counts& c) {
      w.Key("mean_ms");
      WriteIntOrNull(w, c.mean_p95 ? std::optional<std::int64_t>(static_cast<std::int64_t>(c.mean_p95->first))
                                   : std::nullopt);
      w.Key("p95_ms");
      WriteIntOrNull(w, c.mean_p95 ? std::optional<std::int64_t>(c.mean_p95->second) : std::nullopt);
    };
    JsonWriter w(InvalidUtf8::kReplace);
    w.StartObject();
    w.Key("workflows");
    w.StartArray();
    for (const auto& [name, c] : by_workflow) {
      w.StartObject();
      w.Key("name");
      w.String(name);
      w.Key("running");
      w.Uint64(c.running);
      w.Key("completed");
      w.Uint64(c.completed);
      w.Key("failed");
      w.Uint64(c.failed);
      w.Key("dead_lettered");
      auto d = dead_by_workflow.find(name);
      w.Uint64(d == dead_by_workflow.end() ? 0 : d->second);
      write_mean(w, c);
      w.Key("backlog");
      WriteIntOrNull(w, backlog_of(name + ".in"));
      w.EndObject();
    }
    w.EndArray();
    w.Key("types");
    w.StartArray();
    std::set<std::string> types;
    for (const auto& [t, c] : by_type) types.insert(t);
    for (const auto& [t, n] : dead_by_type) types.insert(t);
    for (const auto& t : types) {
      w.StartObject();
      w.Key("type");
      w.String(t);
      auto c = by_type.find(t);
      const WorkflowIndex::Counts counts = c == by_type.end() ? WorkflowIndex::Counts{} : c->second;
      w.Key("running");
      w.Uint64(counts.running);
      w.Key("done");
      w.Uint64(counts.completed);
      w.Key("failed");
      w.Uint64(counts.failed);
      w.Key("dead_lettered");
      auto d = dead_by_type.find(t);
      w.Uint64(d == dead_by_type.end() ? 0 : d->second);
      write_mean(w, counts);
      // Backlog: the lag on the topics this type was read from (as a run's start, as a dead
      // letter's original), null when none of them has a known lag.
      std::set<std::string> topics = counts.topics;
      if (auto dt = dead_topics.find(t); dt != dead_topics.end()) topics.insert(dt->second.begin(), dt->second.end());
      std::optional<std::int64_t> backlog;
      for (const auto& topic : topics) {
        if (auto b = backlog_of(topic)) backlog = backlog.value_or(0) + *b;
      }
      w.Key("backlog");
      WriteIntOrNull(w, backlog);
      w.EndObject();
    }
    w.EndArray();
    w.Key("groups");
    w.StartArray();
    for (const auto& [g, topics] : lag_now) {
      std::int64_t sum = 0;
      for (const auto& [t, l] : topics) sum += l;
      w.StartObject();
      w.Key("group");
      w.String(g);
      w.Key("lag");
      w.Int64(sum);
      w.Key("topics");
      w.StartObject();
      for (const auto& [t, l] : topics) {
        w.Key(t);
        w.Int64(l);
      }
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
    w.Key("jobs");
    w.StartObject();
    w.Key("running");
    w.Uint64(job_counts.running);
    w.Key("succeeded");
    w.Uint64(job_counts.succeeded);
    w.Key("failed");
    w.Uint64(job_counts.failed);
    w.EndObject();
    w.EndObject();
    return {200, w.Take()};
  }

  // ---- actions

  // 403 read-only, 401 without the right token; nullopt when the request may act.
  std::optional<Answer> Refuse(const httplib::Request& req) const {
    if (config.token.empty()) {
      return ErrorAnswer(403, "the console is read-only: start it with KBUS_CONSOLE_TOKEN set to allow actions");
    }
    const std::string auth = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (!auth.starts_with(kBearer) || !SameSecret(std::string_view(auth).substr(kBearer.size()), config.token)) {
      return ErrorAnswer(401, "this action needs the header Authorization: Bearer <KBUS_CONSOLE_TOKEN>");
    }
    return std::nullopt;
  }

  kafka::Producer& Producer() {
    std::lock_guard lock(producer_mu);
    if (!producer) producer = std::make_unique<kafka::Producer>(kafka::ProducerConfig{.client = config.client});
    return *producer;
  }

  Answer Redrive(const JsonValue& body) {
    const std::string group(StrMember(body, "group"));
    if (group.empty()) return ErrorAnswer(400, "the field group is required", "group");
    if (!dead_letters.HasGroup(group)) return ErrorAnswer(404, "no dead letters of group '" + ToValidUtf8(group, 200) + "'");
    const std::string dlq = DeadLetterTopic(group);
    auto partition = body.Find("partition");
    auto offset = body.Find("offset");
    if (partition || offset) {
      const std::int64_t p = partition ? partition->AsInt64().value_or(-1) : -1;
      const std::int64_t o = offset ? offset->AsInt64().value_or(-1) : -1;
      if (p < 0 || p > (1 << 20)) return ErrorAnswer(400, "partition must be a non-negative integer", "partition");
      if (o < 0) return ErrorAnswer(400, "offset must be a non-negative integer", "offset");
      auto copy = kafka::RedriveOne(config.client, group, static_cast<std::int32_t>(p), o, {}, milliseconds(15000));
      if (!copy.ok()) {
        const int status = copy.error().code() == ErrorCode::kNotFound          ? 404
                           : copy.error().code() == ErrorCode::kInvalidArgument ? 400
                                                                                : 503;
        return ErrorAnswer(status, copy.error().message());
      }
      const std::string where = dlq + "/" + std::to_string(p) + "/" + std::to_string(o);
      dead_letters.MarkRedriven(where);
      Log(LogLevel::kInfo, "console: dead letter redriven", {{"dead_letter", where}, {"to", copy->topic}});
      JsonWriter w(InvalidUtf8::kReplace);
      w.StartObject();
      w.Key("redriven");
      w.Uint64(1);
      w.Key("skipped");
      w.Uint64(0);
      w.Key("to_topic");
      w.String(copy->topic);
      w.EndObject();
      return {200, w.Take()};
    }
    // A filter: the same run as `kbus dlq redrive`, from the group's redrive cursor.
    Params params;
    for (const char* f : {"reason", "type"}) {
      if (auto v = body.Find(f); v && v->AsString()) params[f] = std::string(*v->AsString());
    }
    for (const char* f : {"since_ms", "until_ms"}) {
      if (auto v = body.Find(f); v && v->AsInt64()) params[f] = std::to_string(*v->AsInt64());
    }
    Answer bad;
    auto filter = DeadLetterIndex::ParseFilter(params, &bad);
    if (!filter) return bad;
    auto all = body.Find("all");
    if (params.empty() && !(all && all->AsBool().value_or(false))) {
      return ErrorAnswer(400, "name a dead letter (partition, offset), a filter (reason, type, since_ms, until_ms), or "
                              "\"all\": true",
                         "all");
    }
    kafka::RedriveOptions options;
    options.filter = *filter;
    options.timeout = milliseconds(30000);
    options.on_record = [this, &dlq](const kafka::DeadLetterRecord& r, bool redriven, const kafka::RedriveReport&) {
      if (redriven) dead_letters.MarkRedriven(dlq + "/" + std::to_string(r.partition) + "/" + std::to_string(r.offset));
    };
    auto report = kafka::Redrive(config.client, group, options);
    if (!report.ok()) return ErrorAnswer(503, report.error().message());
    Log(LogLevel::kInfo, "console: dead letters redriven",
        {{"group", group}, {"redriven", report->redriven}, {"skipped", report->skipped}});
    return {200, "{\"redriven\":" + std::to_string(report->redriven) + ",\"skipped\":" +
                     std::to_string(report->skipped) + "}"};
  }

  Answer Cancel(const JsonValue& body) {
    handlers::CancelProcess cancel;
    cancel.job_id = std::string(StrMember(body, "job_id"));
    if (cancel.job_id.empty()) return ErrorAnswer(400, "the field job_id is required", "job_id");
    if (auto a = body.Find("attempt")) {
      auto n = a->AsInt64();
      if (!n || *n < 0) return ErrorAnswer(400, "attempt must be a non-negative integer (0: every attempt)", "attempt");
      cancel.attempt = static_cast<int>(*n);
    }
    cancel.reason = std::string(StrMember(body, "reason"));
    if (cancel.reason.empty()) cancel.reason = "cancelled from the console";
    auto key = jobs.LaunchKey(cancel.job_id);
    if (!key) return ErrorAnswer(404, "no job '" + ToValidUtf8(cancel.job_id, 200) + "' that the console has seen");
    SendOptions options;
    options.topic = config.launcher_control_topic;
    options.key = key->empty() ? cancel.job_id : *key;
    try {
      if (kbus::Status s = Producer().Send(cancel, options); !s.ok()) return ErrorAnswer(503, s.error().message());
    } catch (const std::exception& e) {
      return ErrorAnswer(503, e.what());
    }
    Log(LogLevel::kInfo, "console: job cancel sent", {{"job_id", cancel.job_id}, {"attempt", cancel.attempt}});
    return {200, "{\"sent\":true}"};
  }

  Answer PauseResume(const JsonValue& body, bool pause) {
    const std::string name(StrMember(body, "name"));
    if (name.empty()) return ErrorAnswer(400, "the field name is required", "name");
    schedules::Request request;
    request.op = pause ? schedules::Request::Op::kPause : schedules::Request::Op::kResume;
    request.note = std::string(StrMember(body, "note"));
    if (pause && request.note.empty()) request.note = "paused from the console";
    auto from = schedules::EndOffsets(config.client, config.schedules_topic);
    if (!from.ok()) return ErrorAnswer(503, from.error().message());
    Result<std::string> id = Error(ErrorCode::kTransport, "not sent");
    try {
      id = schedules::SendRequest(Producer(), name, request, config.schedules_topic);
    } catch (const std::exception& e) {
      return ErrorAnswer(503, e.what());
    }
    if (!id.ok()) return ErrorAnswer(503, id.error().message());
    auto answer = schedules::Await(config.client, name, *id, *from, milliseconds(15000), config.schedules_topic);
    if (!answer.ok()) {
      return ErrorAnswer(503, "the request was sent but no scheduler answered in 15 s (is kbus-scheduler running?): " +
                                  answer.error().message());
    }
    if (!answer->applied) return ErrorAnswer(answer->schedule ? 409 : 404, answer->refused);
    RefreshSchedules();
    return {200, "{\"applied\":true}"};
  }

  // ---- HTTP

  static Params ParamsOf(const httplib::Request& req) {
    Params p;
    for (const auto& [k, v] : req.params) p[k] = v;
    return p;
  }

  static void Send(httplib::Response& res, const Answer& a) {
    res.status = a.status;
    res.set_header("Cache-Control", "no-store");
    res.set_content(a.json + "\n", kJson);
  }

  void Routes() {
    auto get = [this](const char* path, std::function<Answer(const httplib::Request&)> f) {
      http.Get(path, [f](const httplib::Request& req, httplib::Response& res) { Send(res, f(req)); });
    };
    get("/api/status", [this](const httplib::Request&) { return StatusAnswer(); });
    // Probes, as the operations port of every kbus program answers them (docs/operations.md):
    // live while it serves; ready once the broker answered and the first read caught up.
    get("/healthz", [](const httplib::Request&) { return Answer{200, R"({"live":true})"}; });
    get("/readyz", [this](const httplib::Request&) {
      bool broker;
      std::string error;
      {
        std::lock_guard lock(mu);
        broker = broker_ok;
        error = broker_error;
      }
      const bool caught = CaughtUp();
      if (broker && caught) return Answer{200, R"({"ready":true})"};
      return ErrorAnswer(503, !broker ? "the broker cannot be reached: " + error : "still reading the topics");
    });
    get("/api/workflows", [this](const httplib::Request&) { return workflows.Workflows(); });
    get("/api/instances", [this](const httplib::Request& r) { return workflows.Instances(ParamsOf(r)); });
    const RecordFetch fetch = [this](const std::string& t, std::int32_t p, std::int64_t o) {
      return FetchValue(t, p, o);
    };
    get("/api/instance", [this, fetch](const httplib::Request& r) { return workflows.Instance(ParamsOf(r), fetch); });
    get("/api/result",
        [this, fetch](const httplib::Request& r) { return workflows.ResultOf(ParamsOf(r), fetch, NowMs()); });
    get("/api/jobs", [this](const httplib::Request& r) { return jobs.Jobs(ParamsOf(r), NowMs()); });
    get("/api/job", [this, fetch](const httplib::Request& r) { return jobs.Job(ParamsOf(r), fetch, NowMs()); });
    get("/api/dead-letter-groups", [this](const httplib::Request&) { return dead_letters.Groups(); });
    get("/api/dead-letters", [this](const httplib::Request& r) { return dead_letters.List(ParamsOf(r)); });
    get("/api/dead-letter", [this](const httplib::Request& r) {
      return dead_letters.One(ParamsOf(r), [this](const std::string& g, std::int32_t p, std::int64_t o) {
        return kafka::ReadDeadLetter(config.client, g, p, o, milliseconds(5000));
      });
    });
    get("/api/totals", [this](const httplib::Request&) { return Totals(); });
    get("/api/schedules", [this](const httplib::Request&) {
      std::lock_guard lock(mu);
      return Answer{200, schedules_json};
    });

    auto post = [this](const char* path, std::function<Answer(const JsonValue&)> f) {
      http.Post(path, [this, f](const httplib::Request& req, httplib::Response& res) {
        if (auto refused = Refuse(req)) return Send(res, *refused);
        JsonDocument doc;
        if (kbus::Status s = doc.Parse(req.body); !s.ok() || !doc.Root().IsObject()) {
          return Send(res, ErrorAnswer(400, "the body must be a JSON object" +
                                                (s.ok() ? std::string() : ": " + s.error().message()),
                                       "body"));
        }
        Send(res, f(doc.Root()));
      });
    };
    post("/api/dead-letters/redrive", [this](const JsonValue& b) { return Redrive(b); });
    post("/api/jobs/cancel", [this](const JsonValue& b) { return Cancel(b); });
    post("/api/schedules/pause", [this](const JsonValue& b) { return PauseResume(b, true); });
    post("/api/schedules/resume", [this](const JsonValue& b) { return PauseResume(b, false); });

    http.Get("/", [](const httplib::Request&, httplib::Response& res) { Page(res, "/index.html"); });
    http.Get("/index.html", [](const httplib::Request&, httplib::Response& res) { Page(res, "/index.html"); });
    http.Get("/app.js", [](const httplib::Request&, httplib::Response& res) { Page(res, "/app.js"); });
    http.Get("/style.css", [](const httplib::Request&, httplib::Response& res) { Page(res, "/style.css"); });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string what = res.status == 405 ? "method not allowed on " : "no such page: ";
      Send(res, ErrorAnswer(res.status, what + ToValidUtf8(req.path, 200)));
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what += std::string(": ") + e.what();
      } catch (...) {
      }
      Send(res, ErrorAnswer(500, what));
    });
    // Every answer: no framing by other sites, no sniffing, scripts and styles only from here.
    http.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("X-Frame-Options", "DENY");
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' "
                     "data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
      res.set_header("Referrer-Policy", "no-referrer");
    });
  }

  static void Page(httplib::Response& res, std::string_view path) {
    auto asset = FindAsset(path);
    if (!asset) {
      res.status = 404;
      return;
    }
    res.set_content(std::string(asset->content), std::string(asset->content_type));
  }
};

Console::Console(ConsoleConfig config) {
  if (config.port < 0 || config.port > 65535) {
    throw std::invalid_argument("port " + std::to_string(config.port) + ": not a TCP port (1-65535)");
  }
  if (config.finished_jobs < 1) throw std::invalid_argument("finished_jobs must be at least 1");
  if (config.steps_per_instance < 1) throw std::invalid_argument("steps_per_instance must be at least 1");
  if (config.discover_interval < milliseconds(100)) throw std::invalid_argument("discover_interval must be >= 100ms");
  if (config.lag_interval < milliseconds(100)) throw std::invalid_argument("lag_interval must be >= 100ms");
  if (config.silent_after <= milliseconds(0)) throw std::invalid_argument("silent_after must be positive");
  if (config.client.brokers.empty()) throw std::invalid_argument("brokers: name at least one broker");
  impl_ = std::make_unique<Impl>(std::move(config));
  Impl* impl = impl_.get();
  auto& http = impl->http;
  // Fifty clients polling at once are served without queueing behind each other for long.
  http.new_task_queue = [] { return new httplib::ThreadPool(16); };
  // An answer is written as headers, then body: without TCP_NODELAY the body waits for the
  // client's delayed ACK of the headers, 40 ms per request on Linux (bench/console.cpp).
  http.set_tcp_nodelay(true);
  http.set_keep_alive_max_count(100);
  http.set_keep_alive_timeout(2);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  http.set_payload_max_length(64 * 1024);
  http.set_socket_options([impl](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    impl->listen_socket = sock;
  });
  impl->Routes();
  const auto& c = impl->config;
  errno = 0;
  int bound = -1;
  if (c.port == 0) {
    bound = http.bind_to_any_port(c.bind_address.c_str());
  } else if (http.bind_to_port(c.bind_address.c_str(), c.port)) {
    bound = c.port;
  }
  if (bound <= 0) {
    const int err = errno;
    throw std::runtime_error("--port " + std::to_string(c.port) + ": cannot listen on " + c.bind_address + ":" +
                             std::to_string(c.port) + (err ? std::string(" (") + std::strerror(err) + ")" : "") +
                             ": choose a free port");
  }
  impl->port = bound;
  // cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, built into Debian's
  // library). Fifty clients connecting at once, or again after keep_alive_max_count answers,
  // overflow it, and each dropped connection attempt costs its client a SYN retransmission:
  // answers 1, 3 or 7 s late (bench/console.cpp). Listening again raises the backlog.
  if (impl->listen_socket != INVALID_SOCKET && ::listen(impl->listen_socket, SOMAXCONN) != 0) {
    Log(LogLevel::kWarn, "console: cannot raise the listen backlog; clients may wait to connect",
        {{"error", std::string(std::strerror(errno))}});
  }
  impl->http_thread = std::thread([impl] {
    impl->http.listen_after_bind();
    impl->listening_ended.store(true);
  });
  impl->discovery = std::thread([impl] {
    do {
      impl->Discover();
      impl->RefreshSchedules();
    } while (impl->Wait(impl->config.discover_interval));
  });
  impl->lagger = std::thread([impl] {
    // The first look once discovery has listed the topics, then every lag_interval.
    if (!impl->Wait(milliseconds(1000))) return;
    do {
      impl->RefreshLag();
    } while (impl->Wait(impl->config.lag_interval));
  });
}

Console::~Console() {
  {
    std::lock_guard lock(impl_->stop_mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  while (!impl_->listening_ended.load()) {
    if (impl_->http.is_running()) {
      impl_->http.stop();
      break;
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  if (impl_->http_thread.joinable()) impl_->http_thread.join();
  if (impl_->discovery.joinable()) impl_->discovery.join();
  if (impl_->lagger.joinable()) impl_->lagger.join();
  std::lock_guard lock(impl_->mu);
  impl_->followers.clear();
}

int Console::port() const { return impl_->port; }

bool Console::caught_up() const { return impl_->CaughtUp(); }

Console::Stats Console::stats() const {
  Stats s;
  s.instances = impl_->workflows.size();
  s.jobs = impl_->jobs.size();
  s.dead_letters = impl_->dead_letters.size();
  std::lock_guard lock(impl_->mu);
  for (const auto& [t, f] : impl_->followers) s.records_read += f->records();
  return s;
}

}  // namespace kbus::console
