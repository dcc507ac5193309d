#include "kbus/handlers/docker_backend.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>

#include "docker_engine.hpp"
#include "kbus/json.hpp"
#include "kbus/log.hpp"
#include "process_output.hpp"

namespace kbus::handlers {

using detail::Engine;
using detail::EngineReply;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kScopeLabel = "kbus.group";  // the scope: a launcher group
constexpr std::string_view kJobKeyLabel = "kbus.job_key";
// A log stream that breaks while its container still runs is opened again, this many times.
constexpr int kStreamReopens = 20;

std::uint64_t Fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 1469598103934665603ull;
  auto add = [&](std::string_view s) {
    for (const char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
  };
  add(a);
  add(std::string_view("\0", 1));
  add(b);
  return h;
}

// What inspecting a container tells.
struct State {
  std::string id;
  bool running = false;
  bool oom_killed = false;
  int exit_code = -1;
  std::int64_t pid = 0;
  std::string status;  // created, running, exited, ...
  std::chrono::system_clock::time_point started_at{}, finished_at{};
  std::map<std::string, std::string> labels;
};

// RFC 3339 with nanoseconds, as the engine writes times; epoch for what does not parse (the
// engine's "0001-01-01T00:00:00Z" for never).
std::chrono::system_clock::time_point ParseTime(std::string_view text) {
  std::tm tm{};
  int nanos = 0;
  const std::string s(text);
  if (s.size() < 20 || std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6 || tm.tm_year < 1970) {
    return {};
  }
  if (s[19] == '.') {
    int digits = 0;
    for (std::size_t i = 20; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && digits < 9; ++i, ++digits) {
      nanos = nanos * 10 + (s[i] - '0');
    }
    while (digits++ < 9) nanos *= 10;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(nanos));
}

std::string StringAt(const JsonValue& object, std::string_view name) {
  const auto v = object.Find(name);
  return v ? std::string(v->AsString().value_or("")) : std::string();
}

std::map<std::string, std::string> ReadLabels(const std::optional<JsonValue>& labels) {
  std::map<std::string, std::string> out;
  if (!labels || !labels->IsObject()) return out;
  for (std::size_t i = 0; i < labels->Size(); ++i) {
    if (auto v = labels->MemberValue(i).AsString()) out.emplace(labels->MemberName(i), *v);
  }
  return out;
}

std::string CreateBody(const ProcessSpec& spec, const std::string& scope) {
  const ContainerSpec& c = spec.container;
  JsonWriter w;
  w.StartObject();
  w.Key("Image");
  w.String(c.image);
  w.Key("Entrypoint");
  w.StartArray();
  w.String(spec.path);
  w.EndArray();
  w.Key("Cmd");
  w.StartArray();
  for (const auto& a : spec.args) w.String(a);
  w.EndArray();
  w.Key("Env");
  w.StartArray();
  for (const auto& [k, v] : spec.env) w.String(k + "=" + v);
  w.EndArray();
  w.Key("User");
  w.String(c.user);
  w.Key("WorkingDir");
  w.String("/");
  w.Key("Labels");
  w.StartObject();
  for (const auto& [k, v] : spec.labels) {
    w.Key(k);
    w.String(ToValidUtf8(v));
  }
  w.Key(kScopeLabel);
  w.String(scope);
  w.Key(kJobKeyLabel);
  w.String(ToValidUtf8(spec.job_key));
  w.EndObject();
  w.Key("HostConfig");
  w.StartObject();
  w.Key("Init");
  w.Bool(true);
  w.Key("NetworkMode");
  w.String(c.network);
  w.Key("ReadonlyRootfs");
  w.Bool(c.read_only);
  w.Key("PidsLimit");
  w.Int64(c.pids);
  if (c.cpus > 0) {
    w.Key("NanoCpus");
    w.Int64(static_cast<std::int64_t>(c.cpus * 1e9));
  }
  if (c.memory_bytes > 0) {
    w.Key("Memory");
    w.Int64(c.memory_bytes);
    w.Key("MemorySwap");
    w.Int64(c.memory_bytes);
  }
  w.Key("CapDrop");
  w.StartArray();
  w.String("ALL");
  w.EndArray();
  w.Key("SecurityOpt");
  w.StartArray();
  w.String("no-new-privileges");
  w.EndArray();
  w.Key("Binds");
  w.StartArray();
  for (const auto& m : c.mounts) w.String(m);
  w.EndArray();
  w.Key("Tmpfs");
  w.StartObject();
  for (const auto& t : c.tmpfs) {
    w.Key(t);
    w.String("rw,noexec,nosuid,size=64m");
  }
  w.EndObject();
  // The log is the job's output: bounded, kept until the container is removed.
  w.Key("LogConfig");
  w.StartObject();
  w.Key("Type");
  w.String("json-file");
  w.Key("Config");
  w.StartObject();
  w.Key("max-size");
  w.String("10m");
  w.Key("max-file");
  w.String("2");
  w.EndObject();
  w.EndObject();
  w.EndObject();
  w.EndObject();
  return w.Take();
}

// Splits the engine's multiplexed log stream (8-byte frame headers: stream, 0, 0, 0, size) into
// stdout and stderr. The stream is asked for timestamps: each frame is one log entry that begins
// with the time the engine took it ("2006-01-02T15:04:05.000000000Z "), so an entry read twice
// (a stream opened again from the last time read) is dropped, and Since() says where to go on.
class LogFrames {
 public:
  explicit LogFrames(detail::ProcessOutput& output) : output_(output) {}
  void Add(std::string_view data) {
    pending_.append(data);
    std::size_t at = 0;
    while (pending_.size() - at >= 8) {
      const auto* h = reinterpret_cast<const unsigned char*>(pending_.data() + at);
      const std::size_t size = (std::size_t{h[4]} << 24) | (std::size_t{h[5]} << 16) | (std::size_t{h[6]} << 8) | h[7];
      if (pending_.size() - at - 8 < size) break;
      Entry(h[0], std::string_view(pending_.data() + at + 8, size));
      at += 8 + size;
    }
    pending_.erase(0, at);
  }
  // The `since` of the logs request that goes on after what was read: "seconds.nanoseconds".
  std::string Since() const {
    if (last_ns_ == 0) return "0";
    return std::to_string(last_ns_ / 1000000000) + "." + std::to_string(1000000000 + last_ns_ % 1000000000).substr(1);
  }

 private:
  void Entry(unsigned char stream, std::string_view payload) {
    const auto space = payload.find(' ');
    if (space != std::string_view::npos && space >= 20 && space <= 35) {
      const auto t = ParseTime(payload.substr(0, space));
      if (t != std::chrono::system_clock::time_point{}) {
        const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
        if (ns <= last_ns_) return;  // read before
        last_ns_ = ns;
        payload.remove_prefix(space + 1);
      }
    }
    if (stream == 2) {
      output_.Stderr(payload);
    } else {
      output_.Stdout(payload);
    }
  }

  detail::ProcessOutput& output_;
  std::string pending_;
  std::int64_t last_ns_ = 0;
};

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

void Drain(int fd) {
  std::uint64_t n = 0;
  (void)!::read(fd, &n, sizeof n);
}

}  // namespace

struct DockerBackend::Impl {
  explicit Impl(DockerConfig c) : config(std::move(c)), engine(config.socket) {}
  DockerConfig config;
  Engine engine;

  Result<State> Inspect(const std::string& id) const {
    auto reply = engine.Call("GET", "/containers/" + Engine::Escape(id) + "/json");
    if (!reply.ok()) return reply.error();
    if (reply->status == 404) return Error(ErrorCode::kNotFound, "container " + id + " is gone");
    if (reply->status != 200) return Error(ErrorCode::kTransport, "inspecting container " + id + ": " + reply->Message(), true);
    JsonDocument doc;
    if (Status s = doc.Parse(reply->body); !s.ok()) return s.error();
    const JsonValue root = doc.Root();
    State st;
    st.id = StringAt(root, "Id");
    if (auto s = root.Find("State"); s && s->IsObject()) {
      if (auto v = s->Find("Running")) st.running = v->AsBool().value_or(false);
      if (auto v = s->Find("OOMKilled")) st.oom_killed = v->AsBool().value_or(false);
      if (auto v = s->Find("ExitCode")) st.exit_code = static_cast<int>(v->AsInt64().value_or(-1));
      if (auto v = s->Find("Pid")) st.pid = v->AsInt64().value_or(0);
      st.status = StringAt(*s, "Status");
      st.started_at = ParseTime(StringAt(*s, "StartedAt"));
      st.finished_at = ParseTime(StringAt(*s, "FinishedAt"));
    }
    if (auto c = root.Find("Config"); c && c->IsObject()) st.labels = ReadLabels(c->Find("Labels"));
    return st;
  }

  Status Signal(const std::string& id, std::string_view signal) const {
    auto reply = engine.Call("POST", "/containers/" + Engine::Escape(id) + "/kill?signal=" + std::string(signal));
    if (!reply.ok()) return reply.error();
    // 409: it is not running (any more): nothing to stop.
    if (reply->status != 204 && reply->status != 409) {
      return Error(ErrorCode::kTransport, "signalling container " + id + ": " + reply->Message(), true);
    }
    return Ok();
  }

  // `adopted`: the job ran unwatched for a while; what it printed before now is read first,
  // quietly (ProcessOutput::SetQuiet), for its result line and last progress.
  ProcessResult Follow(const std::string& id, const ProcessSpec& spec, const ProcessObserver& observer,
                       ProcessControl& control, bool adopted) const;
};

DockerBackend::DockerBackend(DockerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
DockerBackend::~DockerBackend() = default;

Status DockerBackend::Ping() const {
  const std::string& socket = impl_->config.socket;
  if (::access(socket.c_str(), R_OK | W_OK) != 0) {
    const int err = errno;
    return Error(ErrorCode::kTransport,
                 "cannot use the Docker engine's socket " + socket + ": " + std::strerror(err) +
                     (err == EACCES ? " (the launcher's user needs the socket's group, or access to it)" : ""));
  }
  auto reply = impl_->engine.Call("GET", "/_ping", {}, std::chrono::seconds(10));
  if (!reply.ok()) return reply.error();
  if (reply->status != 200) {
    return Error(ErrorCode::kTransport, "the Docker engine at " + impl_->config.socket + " answered " +
                                            std::to_string(reply->status) + ": " + reply->Message());
  }
  return Ok();
}

Status DockerBackend::Check(const AllowList& allow) {
  for (const auto& [name, program] : allow.programs()) {
    if (program.container.image.empty()) {
      return Error(ErrorCode::kInvalidArgument, "program '" + name + "' names no image ('" + name +
                                                    ".image = IMAGE'): with the Docker backend every program runs in a container");
    }
  }
  return Ok();
}

std::string DockerBackend::ContainerName(std::string_view scope, std::string_view job_key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t h = Fnv1a(scope, job_key);
  std::string name = "kbus-0000000000000000";
  for (int i = 0; i < 16; ++i, h >>= 4) name[name.size() - 1 - static_cast<std::size_t>(i)] = kHex[h & 15];
  return name;
}

ProcessResult DockerBackend::Run(const ProcessSpec& spec, const ProcessObserver& observer, ProcessControl& control) {
  ProcessResult r;
  r.outcome = ProcessOutcome::kLaunchFailed;
  auto fail = [&](std::string why) {
    r.error = std::move(why);
    return r;
  };
  if (spec.container.image.empty()) return fail("the program names no image: the Docker backend runs containers only");
  if (spec.job_key.empty()) return fail("the job has no job_key: the Docker backend names a container by it");
  if (Readable(control.fd())) {
    r.outcome = control.detached() ? ProcessOutcome::kDetached : ProcessOutcome::kCancelled;
    return r;
  }
  const Engine& engine = impl_->engine;
  const std::string name = ContainerName(impl_->config.scope, spec.job_key);
  auto created = engine.Call("POST", "/containers/create?name=" + name, CreateBody(spec, impl_->config.scope));
  if (!created.ok()) return fail(created.error().message());
  std::string id;
  if (created->status == 201) {
    JsonDocument doc;
    if (doc.Parse(created->body).ok() && doc.Root().IsObject()) {
      id = StringAt(doc.Root(), "Id");
    }
    if (id.empty()) return fail("the Docker engine created a container without saying its id");
  } else if (created->status == 409) {
    // This attempt has a container already: a launch seen again after a crash. Follow that one.
    auto existing = impl_->Inspect(name);
    if (!existing.ok()) return fail("container " + name + " exists but cannot be inspected: " + existing.error().message());
    const auto key = existing->labels.find(std::string(kJobKeyLabel));
    if (key == existing->labels.end() || key->second != ToValidUtf8(spec.job_key)) {
      return fail("container name " + name + " is taken by another job");
    }
    id = existing->id;
    Log(LogLevel::kInfo, "the attempt's container exists: following it", {{"container", id.substr(0, 12)}});
    // Started once, it is never started again: a container that ended is reported as it ended.
    if (existing->status != "created") return impl_->Follow(id, spec, observer, control, true);
  } else if (created->status == 404) {
    return fail("image '" + spec.container.image + "' is not on the Docker engine: " + created->Message());
  } else {
    return fail("the Docker engine refused the container (" + std::to_string(created->status) + "): " + created->Message());
  }
  auto started = engine.Call("POST", "/containers/" + id + "/start");
  if (!started.ok() || (started->status != 204 && started->status != 304)) {
    const std::string why = started.ok() ? started->Message() : started.error().message();
    Forget(id);
    return fail("the container did not start: " + why);
  }
  return impl_->Follow(id, spec, observer, control, false);
}

Result<std::vector<KeptJob>> DockerBackend::ListKept() {
  const std::string filter = "{\"label\":[\"" + std::string(kScopeLabel) + "=" + impl_->config.scope + "\"]}";
  auto reply = impl_->engine.Call("GET", "/containers/json?all=1&filters=" + Engine::Escape(filter));
  if (!reply.ok()) return reply.error();
  if (reply->status != 200) return Error(ErrorCode::kTransport, "listing containers: " + reply->Message(), true);
  JsonDocument doc;
  if (Status s = doc.Parse(reply->body); !s.ok()) return s.error();
  std::vector<KeptJob> out;
  const JsonValue list = doc.Root();
  if (!list.IsArray()) return out;
  for (std::size_t i = 0; i < list.Size(); ++i) {
    const JsonValue c = list.At(i);
    KeptJob job;
    job.handle = StringAt(c, "Id");
    const std::string state = StringAt(c, "State");
    job.running = state == "running" || state == "paused" || state == "restarting";
    job.started = state != "created";
    job.labels = ReadLabels(c.Find("Labels"));
    if (!job.handle.empty()) out.push_back(std::move(job));
  }
  return out;
}

ProcessResult DockerBackend::Follow(const KeptJob& job, const ProcessSpec& spec, const ProcessObserver& observer,
                                    ProcessControl& control) {
  return impl_->Follow(job.handle, spec, observer, control, true);
}

void DockerBackend::Forget(const std::string& handle) {
  auto reply = impl_->engine.Call("DELETE", "/containers/" + Engine::Escape(handle) + "?force=1&v=1");
  if (!reply.ok() || (reply->status != 204 && reply->status != 404)) {
    Log(LogLevel::kWarn, "container not removed",
        {{"container", handle.substr(0, 12)}, {"error", reply.ok() ? reply->Message() : reply.error().message()}});
  }
}

ProcessResult DockerBackend::Impl::Follow(const std::string& id, const ProcessSpec& spec, const ProcessObserver& observer,
                                          ProcessControl& control, bool adopted) const {
  ProcessResult r;
  r.handle = id;
  auto first = Inspect(id);
  if (!first.ok()) {
    r.outcome = ProcessOutcome::kFailed;
    r.error = first.error().message();
    return r;
  }
  const auto wall_started = first->started_at;
  const auto now = Clock::now();
  const auto ran = first->started_at == std::chrono::system_clock::time_point{}
                       ? Clock::duration::zero()
                       : std::chrono::duration_cast<Clock::duration>(std::chrono::system_clock::now() - wall_started);
  if (observer.started) {
    observer.started(static_cast<int>(first->pid), id, std::chrono::duration_cast<std::chrono::milliseconds>(ran));
  }

  detail::ProcessOutput output(r, spec.progress, observer.progress);
  LogFrames frames(output);
  const auto never = Clock::time_point::max();
  auto run_deadline = spec.run_timeout.count() > 0 ? now + spec.run_timeout - std::min<Clock::duration>(ran, spec.run_timeout) : never;
  auto kill_at = never;
  const auto tick = observer.tick_interval.count() > 0 ? observer.tick_interval : std::chrono::milliseconds(0);
  auto next_tick = tick.count() > 0 ? now + tick : never;
  bool timed_out = false, cancelled = false, detached = false;
  auto stop = [&](bool& flag) {
    if (timed_out || cancelled) return;
    flag = true;
    if (Status s = Signal(id, "SIGTERM"); !s.ok()) {
      Log(LogLevel::kWarn, "SIGTERM not sent to the container", {{"container", id.substr(0, 12)}, {"error", s.error().message()}});
    }
    kill_at = Clock::now() + spec.kill_grace;
  };
  auto poll = [&] {
    const auto t = Clock::now();
    if (Readable(control.fd())) {
      Drain(control.fd());
      if (control.detached()) {
        detached = true;
        return false;
      }
      stop(cancelled);
    }
    if (t >= run_deadline) {
      run_deadline = never;
      stop(timed_out);
    }
    if (t >= kill_at) {
      kill_at = never;
      (void)Signal(id, "SIGKILL");
    }
    if (t >= next_tick) {
      next_tick = t + tick;
      if (observer.tick) observer.tick();
    }
    return true;
  };
  auto wake = [&] {
    auto w = std::min({run_deadline, kill_at, next_tick});
    return w == never ? std::chrono::milliseconds(1000)
                      : std::clamp(std::chrono::ceil<std::chrono::milliseconds>(w - Clock::now()),
                                   std::chrono::milliseconds(1), std::chrono::milliseconds(1000));
  };
  // Stdout and stderr from the start (an adopted job's result line may be older than this
  // launcher), until the container stops; then what the engine logged after the stream ended.
  auto read = [&](const std::string& query) {
    return engine.Stream("/containers/" + id + "/logs?stdout=1&stderr=1&timestamps=1&" + query,
                         [&](std::string_view data) { frames.Add(data); }, poll, control.fd(), wake());
  };
  if (adopted) {
    // What it printed while nobody watched: read for its result, its last progress reported once.
    output.SetQuiet(true);
    (void)read("since=0");
    output.SetQuiet(false);
  }
  for (int opened = 0;; ++opened) {
    auto status = detached ? Result<long>(0L) : read("follow=1&since=" + frames.Since());
    if (detached) {
      r.outcome = ProcessOutcome::kDetached;
      return r;
    }
    auto state = Inspect(id);
    if (state.ok() && !state->running) break;
    if (!state.ok() || opened == kStreamReopens) {
      // The engine lost it, or keeps breaking the stream: the job ends here, unwatched.
      r.outcome = ProcessOutcome::kFailed;
      r.error = "the container's log stream broke: " +
                (state.ok() ? (status.ok() ? "status " + std::to_string(*status) : status.error().message())
                            : state.error().message());
      (void)Signal(id, "SIGKILL");
      return r;
    }
  }
  // A follow may end before the engine wrote the container's last lines: wait for the engine
  // to finish with the container, then read what came after the last line read.
  (void)engine.Call("POST", "/containers/" + id + "/wait?condition=not-running");
  (void)read("since=" + frames.Since());
  output.Finish();
  auto end = Inspect(id);
  if (!end.ok()) {
    r.outcome = ProcessOutcome::kFailed;
    r.error = end.error().message();
    return r;
  }
  const auto finished = end->finished_at != std::chrono::system_clock::time_point{} ? end->finished_at : std::chrono::system_clock::now();
  if (end->started_at != std::chrono::system_clock::time_point{} && finished > end->started_at) {
    r.duration = std::chrono::duration_cast<std::chrono::milliseconds>(finished - end->started_at);
  }
  // The init reports a program ended by signal N as 128 + N, as a shell does.
  if (end->exit_code > 128 && end->exit_code <= 128 + 64) {
    r.signal = end->exit_code - 128;
  } else {
    r.exit_code = end->exit_code;
  }
  if (timed_out) {
    r.outcome = ProcessOutcome::kTimedOut;
  } else if (cancelled) {
    r.outcome = ProcessOutcome::kCancelled;
  } else if (end->exit_code == 127 && r.stderr_tail.find("[FATAL tini") != std::string::npos &&
             r.stderr_tail.find("exec ") != std::string::npos) {
    // The init could not execute the program: not in the image, or not executable there.
    r.outcome = ProcessOutcome::kLaunchFailed;
    r.error = "the program could not be executed in the container: " + ToValidUtf8(r.stderr_tail, 512);
  } else if (end->oom_killed) {
    r.outcome = ProcessOutcome::kOutOfMemory;
    r.error = "the container exceeded its memory limit of " + std::to_string(spec.container.memory_bytes) + " bytes";
  } else if (end->exit_code == 0) {
    r.outcome = ProcessOutcome::kSucceeded;
  } else {
    r.outcome = ProcessOutcome::kFailed;
  }
  return r;
}

}  // namespace kbus::handlers
