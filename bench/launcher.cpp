// kbus-launcher-bench: what the launcher costs, on the embedded broker, with the kbus-launcher
// program as a separate process (so its CPU and memory are its own).
//
//   kbus-launcher-bench --launcher PATH            full run (the sizes)
//   kbus-launcher-bench --launcher PATH --quick    smoke test (ctest label "bench")
//   kbus-launcher-bench --launcher PATH --docker-socket SOCK --image IMAGE [--docker-only] [--quick]
//                                                  also the Docker backend (steps 4-6), on the
//                                                  engine at SOCK, IMAGE holding /fake-encoder
//
// The Docker steps on an engine of their own (as root; vfs copies the image per container, so the
// binary is stripped):
//   export DOCKER_HOST=$(scripts/docker-engine.sh start /tmp/kbus-bench-engine)
//   mkdir root && cp build/examples/fake-encoder/fake-encoder-static root/fake-encoder && strip root/fake-encoder
//   tar -C root -c . | docker import - kbus-bench-enc:1
//   build/bench/kbus-launcher-bench --launcher build/handlers/launcher/kbus-launcher --docker-only
//     --docker-socket ${DOCKER_HOST#unix://} --image kbus-bench-enc:1   (one command line)
//   scripts/docker-engine.sh stop /tmp/kbus-bench-engine && rm -rf /tmp/kbus-bench-engine
//
// 1. Launch rate: N launches of /bin/true, each from sending its LaunchProcess to receiving its
//    ProcessExited, against a plain posix_spawn + waitpid loop of /bin/true in this process;
//    prints launches/s of both and the ratio launcher/plain. (The launcher's default of 8
//    processes at once; the commands are sent all at once after one warm-up launch, so the group
//    join is not counted.)
// 2. Idle cost: M concurrent `sleep` jobs with heartbeats every 5 s: the launcher's CPU use
//    (from /proc/PID/stat) over a window while they all run, and its resident memory.
// 3. Backlog: B launches queued for a launcher with --max-processes 4: its resident memory once
//    it has taken what it can (it pauses its partitions), and that only 4 ran.
// With --docker-socket (--docker-only: steps 4-6 alone), against the engine at that socket and
// an image holding the static fake encoder as /fake-encoder (docs/launcher.md, "Measured"):
// 4. Start latency: L sequential launches, each from sending its LaunchProcess to receiving its
//    ProcessStarted, for the local backend (/bin/true) and the Docker backend (/fake-encoder in
//    the image); p50 and p99 (nearest rank) of each, and for scale the same number of containers
//    created, started and inspected through the Engine API directly (what the launcher does
//    before it reports ProcessStarted: p50 and p99, and each call's p50). The
//    launchers fetch with fetch.wait.max.ms 10 here (DockerRun::LauncherStartLatencies: why).
// 5. Docker launch rate: D launches of a short /fake-encoder job, send to ProcessExited, 8 at
//    once, against D containers created, started, waited for and removed through the Engine API
//    directly by 8 threads of this process (libcurl, the same container settings as the
//    launcher's), the two taking turns in rounds; both rates, the ratio launcher/plain, and
//    where the plain loop's time went.
// 6. Docker idle cost: C containers running /fake-encoder with heartbeats every 5 s,
//    --max-processes C: the launcher's CPU over a window and its resident memory, and the
//    resident memory of dockerd, its containerd and the containers' shims; then every job
//    cancelled (CancelProcess), each ProcessExited awaited and the containers' removal.
// After them, no container of the bench's labels (kbus.group=...) may be left on the engine.
// Exits 1 when a check fails (every launch seen, no fifth process, no container left) or a step
// times out.

#include <curl/curl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>

#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"

extern "C" char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using kbus::handlers::CancelProcess;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessStarted;

pid_t Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// The proportional share of resident memory (KiB): pages shared with n processes count 1/n, so
// that summing it over many copies of one program counts their common pages once.
long PssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::stol(line.substr(4));
  }
  return -1;
}

// Counts the launcher's events on a topic, and notes when each job's ProcessStarted arrived.
struct Observer {
  std::atomic<int> started{0}, exited{0}, heartbeats{0}, failed{0}, cancelled{0};
  std::mutex mu;
  std::map<std::string, Clock::time_point> started_at;  // by job id
  std::string last_failure;                             // "JOB: OUTCOME: ERROR"
  kbus::HandlerRegistry handlers;
  std::unique_ptr<kbus::kafka::Worker> worker;
  std::thread thread;

  Observer(const std::string& brokers, const std::string& topic, const std::string& group) {
    kbus::HandlerOptions o;
    o.topic = topic;
    handlers.Handle<ProcessStarted>(
        [this](const ProcessStarted& e, kbus::Context&) {
          const auto now = Clock::now();
          {
            std::lock_guard lock(mu);
            started_at.emplace(e.job_id, now);
          }
          ++started;
        },
        o);
    handlers.Handle<ProcessHeartbeat>([this](const ProcessHeartbeat&, kbus::Context&) { ++heartbeats; }, o);
    handlers.Handle<ProcessExited>(
        [this](const ProcessExited& e, kbus::Context&) {
          if (e.outcome == "cancelled") {
            ++cancelled;
          } else if (e.outcome != "succeeded" && e.outcome != "lost") {
            std::lock_guard lock(mu);
            last_failure = e.job_id + ": " + e.outcome + ": " + e.error;
            ++failed;
          }
          ++exited;
        },
        o);
    kbus::kafka::WorkerConfig c;
    c.client.brokers = brokers;
    c.group = group;
    c.fetch_wait_max = std::chrono::milliseconds(10);
    worker = std::make_unique<kbus::kafka::Worker>(c, handlers);
    thread = std::thread([this] { worker->Run(); });
  }
  ~Observer() {
    worker->Stop();
    thread.join();
  }
  std::optional<Clock::time_point> StartedAt(const std::string& job) {
    std::lock_guard lock(mu);
    const auto it = started_at.find(job);
    return it == started_at.end() ? std::nullopt : std::optional(it->second);
  }
  std::string LastFailure() {
    std::lock_guard lock(mu);
    return last_failure;
  }
};

void Must(const kbus::Status& s, const std::string& what) {
  if (s.ok()) return;
  std::cerr << "kbus-launcher-bench: " << what << ": " << s.error().message() << "\n";
  std::exit(1);
}

bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

struct Bench {
  std::string launcher_path;
  kbus::kafka::EmbeddedBroker& broker;
  kbus::kafka::Producer producer;
  std::filesystem::path allow = std::filesystem::temp_directory_path() / ("kbus-bench-allow-" + std::to_string(getpid()));
  // The Docker backend's allow-list (the local backend refuses programs with an image): "enc",
  // /fake-encoder in the image, with the entry's defaults (no network, read-only, user 65534).
  std::filesystem::path docker_allow =
      std::filesystem::temp_directory_path() / ("kbus-bench-docker-allow-" + std::to_string(getpid()));
  std::string docker_socket;
  int run = 0;

  Bench(std::string path, kbus::kafka::EmbeddedBroker& b, std::string socket = {}, const std::string& image = {})
      : launcher_path(std::move(path)), broker(b), producer([&] {
          kbus::kafka::ProducerConfig pc;
          pc.client.brokers = b.bootstrap();
          return pc;
        }()), docker_socket(std::move(socket)) {
    std::ofstream(allow) << "true = /bin/true\nsleep = /bin/sleep\n";
    if (!docker_socket.empty()) std::ofstream(docker_allow) << "enc = /fake-encoder\nenc.image = " << image << "\n";
  }
  ~Bench() {
    std::filesystem::remove(allow);
    std::filesystem::remove(docker_allow);
  }

  struct Topics {
    std::string launch, control, events, group;
  };
  // The group names the launcher's containers (kbus.group): with the bench's pid in it, a run
  // never adopts what an earlier one on the same engine left behind.
  Topics NewTopics(int partitions) {
    ++run;
    Topics t{"bench.launch." + std::to_string(run), "bench.control." + std::to_string(run),
             "bench.events." + std::to_string(run),
             "bench-launcher-" + std::to_string(getpid()) + "-" + std::to_string(run)};
    for (const auto& name : {t.launch, t.control}) Must(broker.CreateTopic(name, partitions), "create " + name);
    Must(broker.CreateTopic(t.events, 4), "create " + t.events);
    return t;
  }
  pid_t StartLauncher(const Topics& t, int max_processes, bool docker = false, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{launcher_path, "--brokers", broker.bootstrap(), "--group", t.group, "--allow-list",
                                  (docker ? docker_allow : allow).string(), "--launch-topic", t.launch, "--control-topic",
                                  t.control, "--max-processes", std::to_string(max_processes), "--kill-grace-ms", "1000",
                                  "--reply-topics", "bench.events.*", "--log-level", "error"};
    if (docker) {
      for (const auto& a : {std::string("--backend"), std::string("docker"), std::string("--docker-socket"), docker_socket}) {
        args.push_back(a);
      }
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Spawn(args);
  }
  void Send(const Topics& t, const std::string& job, const std::string& program, std::vector<std::string> args,
            std::chrono::milliseconds heartbeat = std::chrono::milliseconds(0), bool sync = false) {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.program = program;
    cmd.args = std::move(args);
    cmd.heartbeat_interval = heartbeat;
    cmd.reply_to = t.events;
    const auto record = kbus::BuildRecord(cmd, {.topic = t.launch, .key = job});
    if (sync) return Must(producer.SendSync(record), "send " + job);
    kbus::Status queued = producer.Produce(record);
    for (int i = 0; !queued.ok() && i < 1000; ++i) {  // the producer's queue is full: let it drain
      producer.Poll(std::chrono::milliseconds(10));
      queued = producer.Produce(record);
    }
    Must(queued, "queue " + job);
  }
  void Cancel(const Topics& t, const std::string& job) {
    CancelProcess cmd;
    cmd.job_id = job;  // attempt 0: every attempt of the job
    cmd.reason = "benchmark over";
    kbus::Status queued = producer.Produce(kbus::BuildRecord(cmd, {.topic = t.control, .key = job}));
    for (int i = 0; !queued.ok() && i < 1000; ++i) {
      producer.Poll(std::chrono::milliseconds(10));
      queued = producer.Produce(kbus::BuildRecord(cmd, {.topic = t.control, .key = job}));
    }
    Must(queued, "queue the cancel of " + job);
  }
  // SIGTERM, then up to 60 s for the launcher to exit; a launcher that does not is killed and
  // reported (-1), rather than hanging the benchmark.
  static int Stop(pid_t pid) {
    kill(pid, SIGTERM);
    int status = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        std::cerr << "kbus-launcher-bench: the launcher did not exit within 60 s of SIGTERM\n";
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

double PlainSpawnRate(int n) {
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    const pid_t pid = Spawn({"/bin/true"});
    int status = 0;
    waitpid(pid, &status, 0);
  }
  return n / std::chrono::duration<double>(Clock::now() - start).count();
}

// --- The Docker Engine API, directly: the plain baseline of steps 4 and 5, and the final check.

// A minimal client of the engine's API socket: one libcurl handle per call, as the launcher's
// backend does (handlers/src/docker_engine.cpp), so neither pays for a connection the other
// keeps.
class PlainEngine {
 public:
  struct Reply {
    long status = 0;  // 0: no answer
    std::string body;
  };
  explicit PlainEngine(std::string socket) : socket_(std::move(socket)) { curl_global_init(CURL_GLOBAL_DEFAULT); }

  Reply Call(const char* method, const std::string& path, const std::string& body = {}) const {
    Reply reply;
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return reply;
    const std::string url = "http://docker/v1.41" + path;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 600L);
    if (std::string_view(method) == "POST") {
      curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t size, std::size_t n, void* out) {
      static_cast<std::string*>(out)->append(data, size * n);
      return size * n;
    });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
    if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return reply;
  }

  // The ids of the containers labelled kbus.group=`group`, running or not; nullopt when the
  // engine does not answer.
  std::optional<std::vector<std::string>> Labelled(const std::string& group) const {
    const std::string filter = "{\"label\":[\"kbus.group=" + group + "\"]}";
    char* escaped = curl_easy_escape(nullptr, filter.c_str(), static_cast<int>(filter.size()));
    const Reply r = Call("GET", std::string("/containers/json?all=1&filters=") + escaped);
    curl_free(escaped);
    kbus::JsonDocument doc;
    if (r.status != 200 || !doc.Parse(r.body).ok() || !doc.Root().IsArray()) return std::nullopt;
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < doc.Root().Size(); ++i) {
      if (auto id = doc.Root().At(i).Find("Id")) ids.emplace_back(id->AsString().value_or(""));
    }
    return ids;
  }

 private:
  std::string socket_;
};

// The body the launcher's Docker backend sends for the allow-list entry "enc" (CreateBody in
// handlers/src/docker_backend.cpp, the entry's defaults), so that the plain loop starts the same
// containers.
std::string PlainCreateBody(const std::string& image, const std::vector<std::string>& args, const std::string& group) {
  kbus::JsonWriter w;
  w.StartObject();
  w.Key("Image");
  w.String(image);
  w.Key("Entrypoint");
  w.StartArray();
  w.String("/fake-encoder");
  w.EndArray();
  w.Key("Cmd");
  w.StartArray();
  for (const auto& a : args) w.String(a);
  w.EndArray();
  w.Key("Env");
  w.StartArray();
  w.EndArray();
  w.Key("User");
  w.String("65534:65534");
  w.Key("WorkingDir");
  w.String("/");
  w.Key("Labels");
  w.StartObject();
  w.Key("kbus.group");
  w.String(group);
  w.EndObject();
  w.Key("HostConfig");
  w.StartObject();
  w.Key("Init");
  w.Bool(true);
  w.Key("NetworkMode");
  w.String("none");
  w.Key("ReadonlyRootfs");
  w.Bool(true);
  w.Key("PidsLimit");
  w.Int64(256);
  w.Key("CapDrop");
  w.StartArray();
  w.String("ALL");
  w.EndArray();
  w.Key("SecurityOpt");
  w.StartArray();
  w.String("no-new-privileges");
  w.EndArray();
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

// Seconds each phase of the plain loop took, summed over its containers.
struct PlainPhases {
  double create = 0, start = 0, inspect = 0, wait = 0, remove = 0;
  int done = 0, failed = 0;
  std::string failure;
};

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One container of the short job, created, started, (with `inspect`, inspected once started, as
// the launcher does before it reports ProcessStarted) waited for and removed; false (and why in
// `phases.failure`) when the engine refused a step.
bool PlainContainer(const PlainEngine& engine, const std::string& body, PlainPhases& phases, bool inspect = false) {
  auto fail = [&](const std::string& what, const PlainEngine::Reply& r) {
    phases.failure = what + ": " + std::to_string(r.status) + " " + r.body.substr(0, 300);
    ++phases.failed;
    return false;
  };
  auto t = Clock::now();
  const auto created = engine.Call("POST", "/containers/create", body);
  kbus::JsonDocument doc;
  std::string id;
  if (created.status == 201 && doc.Parse(created.body).ok() && doc.Root().IsObject()) {
    if (auto v = doc.Root().Find("Id")) id = std::string(v->AsString().value_or(""));
  }
  if (id.empty()) return fail("create", created);
  phases.create += Since(t);
  t = Clock::now();
  const auto started = engine.Call("POST", "/containers/" + id + "/start");
  if (started.status != 204) {
    engine.Call("DELETE", "/containers/" + id + "?force=1&v=1");
    return fail("start", started);
  }
  phases.start += Since(t);
  if (inspect) {
    t = Clock::now();
    const auto inspected = engine.Call("GET", "/containers/" + id + "/json");
    if (inspected.status != 200) {
      engine.Call("DELETE", "/containers/" + id + "?force=1&v=1");
      return fail("inspect", inspected);
    }
    phases.inspect += Since(t);
  }
  t = Clock::now();
  const auto waited = engine.Call("POST", "/containers/" + id + "/wait");
  if (waited.status != 200) {
    engine.Call("DELETE", "/containers/" + id + "?force=1&v=1");
    return fail("wait", waited);
  }
  phases.wait += Since(t);
  t = Clock::now();
  const auto removed = engine.Call("DELETE", "/containers/" + id + "?force=1&v=1");
  if (removed.status != 204) return fail("remove", removed);
  phases.remove += Since(t);
  ++phases.done;
  return true;
}

// n containers through `threads` threads at once; the phases summed over all of them.
PlainPhases PlainContainers(const PlainEngine& engine, const std::string& body, int n, int threads) {
  std::atomic<int> next{0};
  std::vector<PlainPhases> each(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      while (next++ < n) PlainContainer(engine, body, each[static_cast<std::size_t>(i)]);
    });
  }
  for (auto& th : pool) th.join();
  PlainPhases sum;
  for (const auto& p : each) {
    sum.create += p.create;
    sum.start += p.start;
    sum.wait += p.wait;
    sum.remove += p.remove;
    sum.done += p.done;
    sum.failed += p.failed;
    if (!p.failure.empty()) sum.failure = p.failure;
  }
  return sum;
}

// Nearest rank: the smallest sample with at least p of them at or below it.
double Percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(samples.size())));
  return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

// The process listening on the unix socket at `path` (dockerd for the engine's socket), from
// /proc/net/unix and the processes' descriptors; -1 when not found (another pid namespace).
pid_t SocketOwner(const std::string& path) {
  std::ifstream table("/proc/net/unix");
  std::string inode;
  for (std::string line; std::getline(table, line);) {
    // Num RefCount Protocol Flags Type St Inode Path; flags 00010000: listening
    std::istringstream fields(line);
    std::string num, refs, proto, flags, type, st, node, name;
    if (fields >> num >> refs >> proto >> flags >> type >> st >> node >> name && name == path && flags == "00010000") {
      inode = node;
      break;
    }
  }
  if (inode.empty()) return -1;
  const std::string want = "socket:[" + inode + "]";
  for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = proc.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ec;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fd", ec)) {
      std::error_code lec;
      if (std::filesystem::read_symlink(fd.path(), lec).string() == want) return std::stoi(pid);
    }
  }
  return -1;
}

// The processes whose short name (/proc/PID/comm, at most 15 characters) is `comm` and whose
// command line passes `accept`: how many, and their resident memory and its proportional share
// summed (KiB).
struct Footprint {
  int count = 0;
  long rss = 0, pss = 0;
};
Footprint RssOfAll(const std::string& comm, const std::function<bool(pid_t, const std::vector<std::string>&)>& accept) {
  Footprint f;
  for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = proc.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(proc.path() / "comm");
    std::string name;
    if (!std::getline(in, name) || name != comm) continue;
    std::ifstream cmdline(proc.path() / "cmdline");
    std::vector<std::string> args;
    for (std::string arg; std::getline(cmdline, arg, '\0');) args.push_back(arg);
    if (!accept(std::stoi(pid), args)) continue;
    const long rss = RssKib(std::stoi(pid));
    if (rss < 0) continue;
    ++f.count;
    f.rss += rss;
    f.pss += std::max(0L, PssKib(std::stoi(pid)));
  }
  return f;
}

pid_t ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string state;
  pid_t parent = -1;
  rest >> state >> parent;
  return parent;
}


// Steps 4-6 (the header comment): the Docker backend, on the engine `engine` talks to.
struct DockerRun {
  Bench& bench;
  const PlainEngine& engine;
  std::string image;
  bool quick = false;
  bool ok = true;
  std::vector<std::string> groups;  // every kbus.group label the bench's containers carry

  static constexpr int kAtOnce = 8;  // the launcher's default --max-processes, and the plain loop's threads
  static std::vector<std::string> ShortJob() { return {"--seconds", "0", "--steps", "1"}; }

  // n sequential launches, each waited for to its end: send to ProcessStarted, in milliseconds.
  // The launcher fetches with fetch.wait.max.ms 10, as the observer does: the embedded broker
  // (librdkafka's mock cluster) answers an empty fetch only when that wait is over, never when a
  // record arrives, so with the default 100 ms a launch sent while the launcher idles waits up to
  // 100 ms for it (a real broker answers at once); that would hide the backends' difference.
  std::vector<double> LauncherStartLatencies(bool docker, int n) {
    std::vector<double> samples;
    auto t = bench.NewTopics(4);
    if (docker) groups.push_back(t.group);
    Observer obs(bench.broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, kAtOnce, docker, {"-X", "fetch.wait.max.ms=10"});
    const std::string program = docker ? "enc" : "true";
    const auto args = docker ? ShortJob() : std::vector<std::string>{};
    bench.Send(t, "warm-up", program, args, {}, true);  // the group joins are not counted
    if (!WaitUntil([&] { return obs.exited == 1; }, std::chrono::seconds(120))) {
      std::cerr << "start latency: the warm-up launch never exited\n";
      ok = false;
    }
    for (int i = 0; ok && i < n; ++i) {
      const std::string job = "latency-" + std::to_string(i);
      const auto sent = Clock::now();
      bench.Send(t, job, program, args, {}, true);
      std::optional<Clock::time_point> started;
      if (!WaitUntil([&] { return (started = obs.StartedAt(job)).has_value(); }, std::chrono::seconds(60)) ||
          !WaitUntil([&] { return obs.exited == i + 2; }, std::chrono::seconds(60))) {
        std::cerr << "start latency: " << job << " did not start and exit within 60 s\n";
        ok = false;
        break;
      }
      samples.push_back(std::chrono::duration<double, std::milli>(*started - sent).count());
    }
    if (obs.failed != 0) {
      std::cerr << "start latency: " << obs.failed.load() << " failed, the last " << obs.LastFailure() << "\n";
      ok = false;
    }
    ok &= Bench::Stop(pid) == 0;
    return samples;
  }

  // 4. Start latency, both backends, and containers created and started directly.
  void StartLatency(int n) {
    const auto local = LauncherStartLatencies(false, n);
    const auto docker = LauncherStartLatencies(true, n);
    const std::string group = "bench-plain-latency-" + std::to_string(getpid());
    groups.push_back(group);
    const std::string body = PlainCreateBody(image, ShortJob(), group);
    std::vector<double> plain, create, start, inspect;
    for (int i = 0; i < n; ++i) {
      PlainPhases p;
      if (!PlainContainer(engine, body, p, true)) {
        std::cerr << "start latency: plain container: " << p.failure << "\n";
        ok = false;
        break;
      }
      plain.push_back(1000 * (p.create + p.start + p.inspect));
      create.push_back(1000 * p.create);
      start.push_back(1000 * p.start);
      inspect.push_back(1000 * p.inspect);
    }
    auto line = [](const std::vector<double>& s) {
      char text[128];
      std::snprintf(text, sizeof text, "p50 %.1f ms, p99 %.1f ms", Percentile(s, 0.5), Percentile(s, 0.99));
      return std::string(text);
    };
    std::printf("start latency: %d sequential launches, send to ProcessStarted received: local /bin/true %s; "
                "docker /fake-encoder %s; plain create+start+inspect of the same container %s (p50 create %.1f, "
                "start %.1f, inspect %.1f ms)\n",
                n, line(local).c_str(), line(docker).c_str(), line(plain).c_str(), Percentile(create, 0.5),
                Percentile(start, 0.5), Percentile(inspect, 0.5));
    ok &= static_cast<int>(local.size()) == n && static_cast<int>(docker.size()) == n;
  }

  // 5. Launches per second, against the plain loop with as many at once. The two take turns in
  // `rounds` rounds of n / rounds each, so that what else runs on the machine (the engine
  // finishing earlier work, other programs) weighs on both alike.
  void LaunchRate(int n, int rounds) {
    const int per_round = n / rounds;
    n = per_round * rounds;
    const std::string group = "bench-plain-rate-" + std::to_string(getpid());
    groups.push_back(group);
    const std::string body = PlainCreateBody(image, ShortJob(), group);
    PlainPhases warm;
    if (!PlainContainer(engine, body, warm)) {
      std::cerr << "docker launch rate: plain warm-up: " << warm.failure << "\n";
      ok = false;
      return;
    }
    auto t = bench.NewTopics(4);
    groups.push_back(t.group);
    Observer obs(bench.broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, kAtOnce, true);
    bench.Send(t, "warm-up", "enc", ShortJob(), {}, true);
    if (!WaitUntil([&] { return obs.exited == 1; }, std::chrono::seconds(120))) {
      std::cerr << "docker launch rate: the warm-up launch never exited\n";
      ok = false;
    }

    PlainPhases plain;
    double plain_s = 0, launcher_s = 0;
    for (int round = 0; ok && round < rounds; ++round) {
      auto start = Clock::now();
      const PlainPhases p = PlainContainers(engine, body, per_round, kAtOnce);
      plain_s += Since(start);
      plain.create += p.create;
      plain.start += p.start;
      plain.wait += p.wait;
      plain.remove += p.remove;
      plain.done += p.done;
      plain.failed += p.failed;
      if (!p.failure.empty()) plain.failure = p.failure;

      start = Clock::now();
      const int first = round * per_round;
      for (int i = first; i < first + per_round; ++i) bench.Send(t, "enc-" + std::to_string(i), "enc", ShortJob());
      if (!WaitUntil([&] { return obs.exited == first + per_round + 1; }, std::chrono::seconds(quick ? 120 : 900))) {
        ok = false;
        std::cerr << "docker launch rate: " << obs.started.load() << " started, " << obs.exited.load() << " exited of "
                  << first + per_round + 1 << " launched\n";
      }
      launcher_s += Since(start);
    }
    const double plain_rate = plain_s > 0 ? plain.done / plain_s : 0;
    const double rate = launcher_s > 0 ? (obs.exited - 1) / launcher_s : 0;
    if (plain.failed != 0) {
      std::cerr << "docker launch rate: " << plain.failed << " plain containers failed, the last at " << plain.failure << "\n";
      ok = false;
    }
    if (obs.failed != 0) {
      std::cerr << "docker launch rate: " << obs.failed.load() << " failed, the last " << obs.LastFailure() << "\n";
      ok = false;
    }
    ok &= Bench::Stop(pid) == 0;
    const double each = plain.done > 0 ? 1000.0 / plain.done : 0;
    std::printf("docker launch rate: %d launches of /fake-encoder --seconds 0, %d at once, in %d rounds taking turns "
                "with the plain loop: launcher %.1f/s (send to Exited event), plain create+start+wait+remove %.1f/s, "
                "ratio %.3f; the plain loop's mean per container: create %.0f ms, start %.0f ms, wait %.0f ms, "
                "remove %.0f ms\n",
                n, kAtOnce, rounds, rate, plain_rate, plain_rate > 0 ? rate / plain_rate : 0, plain.create * each,
                plain.start * each, plain.wait * each, plain.remove * each);
  }

  // 6. Many running containers: what they cost the launcher (and the engine), then cancelled.
  void IdleCost(int running, int window_s) {
    auto t = bench.NewTopics(4);
    groups.push_back(t.group);
    Observer obs(bench.broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, running, true);
    const auto start = Clock::now();
    for (int i = 0; i < running; ++i) {
      bench.Send(t, "run-" + std::to_string(i), "enc", {"--seconds", "900", "--steps", "1"}, std::chrono::seconds(5));
    }
    if (!WaitUntil([&] { return obs.started == running; }, std::chrono::seconds(quick ? 120 : 900))) {
      std::cerr << "docker idle cost: " << obs.started.load() << " of " << running << " started\n";
      ok = false;
    }
    const double start_s = Since(start);
    const double cpu0 = CpuSeconds(pid);
    const int beats0 = obs.heartbeats;
    std::this_thread::sleep_for(std::chrono::seconds(window_s));
    const double cpu = CpuSeconds(pid) - cpu0;
    const long rss = RssKib(pid);
    const pid_t dockerd = SocketOwner(bench.docker_socket);
    const long dockerd_rss = dockerd > 0 ? RssKib(dockerd) : -1;
    // The engine's containerd (dockerd's child), and the shims of the bench's containers
    // (containerd-shim-runc-v2 ... -id ID, the name cut to 15 characters): other engines may run
    // on the machine.
    const Footprint containerd =
        RssOfAll("containerd", [&](pid_t p, const std::vector<std::string>&) { return dockerd > 0 && ParentOf(p) == dockerd; });
    std::vector<std::string> ids = engine.Labelled(t.group).value_or(std::vector<std::string>{});
    std::sort(ids.begin(), ids.end());
    const Footprint shims = RssOfAll("containerd-shim", [&](pid_t, const std::vector<std::string>& args) {
      const auto id = std::find(args.begin(), args.end(), "-id");
      return id != args.end() && id + 1 != args.end() && std::binary_search(ids.begin(), ids.end(), *(id + 1));
    });
    std::printf("docker idle cost: %d running containers (all started %.1f s after the first send), heartbeats "
                "every 5 s: launcher CPU %.3f s over %d s (%.2f%% of a core), %d heartbeats received, resident "
                "memory %.1f MiB; dockerd %.1f MiB, its containerd %.1f MiB, the containers' %d shims %.1f MiB (their "
                "proportional share %.1f MiB)\n",
                obs.started.load(), start_s, cpu, window_s, 100 * cpu / window_s, obs.heartbeats - beats0,
                rss / 1024.0, dockerd_rss / 1024.0, containerd.count == 1 ? containerd.rss / 1024.0 : -1.0, shims.count,
                shims.rss / 1024.0, shims.pss / 1024.0);

    const auto cancel_start = Clock::now();
    for (int i = 0; i < running; ++i) bench.Cancel(t, "run-" + std::to_string(i));
    Must(bench.producer.Flush(std::chrono::seconds(30)), "flush the cancels");
    if (!WaitUntil([&] { return obs.exited == obs.started; }, std::chrono::seconds(quick ? 120 : 600))) {
      std::cerr << "docker idle cost: " << obs.exited.load() << " of " << obs.started.load() << " exited after the cancels\n";
      ok = false;
    }
    const double cancel_s = Since(cancel_start);
    // A container is removed once its end is reported: give the last removals a moment.
    WaitUntil([&] { auto left = engine.Labelled(t.group); return left && left->empty(); }, std::chrono::seconds(120));
    const double gone_s = Since(cancel_start);
    if (obs.failed != 0 || obs.cancelled != obs.started) {
      std::cerr << "docker idle cost: " << obs.cancelled.load() << " cancelled, " << obs.failed.load()
                << " failed (the last " << obs.LastFailure() << ") of " << obs.started.load() << "\n";
      ok = false;
    }
    ok &= Bench::Stop(pid) == 0;
    std::printf("docker cancel: %d cancelled, every ProcessExited in %.1f s, every container removed in %.1f s\n",
                obs.cancelled.load(), cancel_s, gone_s);
  }

  // No container of the bench may be left; any that is is named, then removed.
  void CheckNoneLeft() {
    int left = 0;
    for (const auto& group : groups) {
      const auto ids = engine.Labelled(group);
      if (!ids) {
        std::cerr << "the engine did not list the containers of kbus.group=" << group << "\n";
        ok = false;
        continue;
      }
      for (const auto& id : *ids) {
        std::cerr << "container " << id.substr(0, 12) << " of kbus.group=" << group << " is left; removing it\n";
        engine.Call("DELETE", "/containers/" + id + "?force=1&v=1");
        ++left;
      }
    }
    std::printf("docker containers left of the bench's %zu groups: %d\n", groups.size(), left);
    ok &= left == 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string launcher, docker_socket, image;
  bool quick = false, docker_only = false;
  po::options_description desc("kbus-launcher-bench options");
  desc.add_options()("launcher", po::value(&launcher)->required(), "path of kbus-launcher")(
      "quick", po::bool_switch(&quick), "smoke test sizes")(
      "docker-socket", po::value(&docker_socket), "also measure the Docker backend, on the engine at this socket")(
      "image", po::value(&image), "with --docker-socket: the image holding the static fake encoder as /fake-encoder")(
      "docker-only", po::bool_switch(&docker_only), "with --docker-socket: the Docker steps alone");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "kbus-launcher-bench: " << e.what() << "\n";
    return 2;
  }
  if (docker_socket.empty() != image.empty() || (docker_only && docker_socket.empty())) {
    std::cerr << "kbus-launcher-bench: --docker-socket and --image go together, and --docker-only needs them\n";
    return 2;
  }
  const int launches = quick ? 200 : 2000;
  const int sleepers = quick ? 20 : 500;
  const int idle_window_s = quick ? 3 : 20;
  const int backlog = quick ? 2000 : 100000;
  const int latency_launches = quick ? 5 : 50;
  const int docker_launches = quick ? 5 : 200;
  const int docker_running = quick ? 10 : 200;

  kbus::kafka::EmbeddedBroker broker;
  Bench bench(launcher, broker, docker_socket, image);
  bool ok = true;

  // 1. Launch rate.
  if (!docker_only) {
    const double plain = PlainSpawnRate(launches);
    auto t = bench.NewTopics(4);
    Observer obs(broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, 8);
    bench.Send(t, "warm-up", "true", {}, {}, true);
    if (!WaitUntil([&] { return obs.exited == 1; }, std::chrono::seconds(60))) {
      std::cerr << "the warm-up launch never exited\n";
      return 1;
    }
    const auto start = Clock::now();
    for (int i = 0; i < launches; ++i) bench.Send(t, "true-" + std::to_string(i), "true", {});
    if (!WaitUntil([&] { return obs.exited == launches + 1; }, std::chrono::seconds(quick ? 100 : 300))) {
      ok = false;
      std::cerr << "launch rate: " << obs.started.load() << " started, " << obs.exited.load() << " exited of "
                << launches + 1 << " launched\n";
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double rate = obs.exited.load() > 1 ? (obs.exited - 1) / seconds : 0;
    ok &= obs.failed == 0;
    std::printf("launch rate: %d launches of /bin/true: launcher %.0f/s (launch to Exited event), "
                "plain posix_spawn+waitpid %.0f/s, ratio %.3f\n",
                launches, rate, plain, rate / plain);
    ok &= Bench::Stop(pid) == 0;
  }

  // 2. Idle cost of many sleeping jobs.
  if (!docker_only) {
    auto t = bench.NewTopics(4);
    Observer obs(broker.bootstrap(), t.events, t.group + "-obs");
    const pid_t pid = bench.StartLauncher(t, sleepers);
    const std::string secs = std::to_string(idle_window_s + 10);
    for (int i = 0; i < sleepers; ++i) {
      bench.Send(t, "sleep-" + std::to_string(i), "sleep", {secs}, std::chrono::seconds(5));
    }
    ok &= WaitUntil([&] { return obs.started == sleepers; }, std::chrono::seconds(120));
    const double cpu0 = CpuSeconds(pid);
    const int beats0 = obs.heartbeats;
    std::this_thread::sleep_for(std::chrono::seconds(idle_window_s));
    const double cpu = CpuSeconds(pid) - cpu0;
    const long rss = RssKib(pid);
    std::printf("idle cost: %d concurrent sleep jobs, heartbeats every 5 s: launcher CPU %.3f s over "
                "%d s (%.2f%% of a core), %d heartbeats received, resident memory %.1f MiB\n",
                obs.started.load(), cpu, idle_window_s, 100 * cpu / idle_window_s, obs.heartbeats - beats0,
                rss / 1024.0);
    ok &= Bench::Stop(pid) == 0;
  }

  // 3. A backlog for a launcher that can take 4.
  if (!docker_only) {
    auto t = bench.NewTopics(16);
    Observer obs(broker.bootstrap(), t.events, t.group + "-obs");
    for (int i = 0; i < backlog; ++i) bench.Send(t, "queued-" + std::to_string(i), "sleep", {"60"});
    Must(bench.producer.Flush(std::chrono::seconds(60)), "flush the backlog");
    const pid_t pid = bench.StartLauncher(t, 4);
    ok &= WaitUntil([&] { return obs.started == 4; }, std::chrono::seconds(60));
    std::this_thread::sleep_for(std::chrono::seconds(quick ? 2 : 10));
    const long rss = RssKib(pid);
    std::printf("backlog: %d launches queued, --max-processes 4: %d started, resident memory %.1f MiB\n",
                backlog, obs.started.load(), rss / 1024.0);
    ok &= obs.started == 4;
    ok &= Bench::Stop(pid) == 0;
  }
  // 4-6. The Docker backend.
  if (!docker_socket.empty()) {
    const PlainEngine engine(docker_socket);
    if (engine.Call("GET", "/_ping").status != 200) {
      std::cerr << "kbus-launcher-bench: no Docker engine answers at " << docker_socket << "\n";
      return 1;
    }
    DockerRun docker{bench, engine, image, quick};
    docker.StartLatency(latency_launches);
    if (docker.ok) docker.LaunchRate(docker_launches, quick ? 1 : 4);
    if (docker.ok) docker.IdleCost(docker_running, idle_window_s);
    docker.CheckNoneLeft();
    ok &= docker.ok;
  }
  std::printf("%s\n", ok ? "all checks passed" : "CHECKS FAILED");
  return ok ? 0 : 1;
}
