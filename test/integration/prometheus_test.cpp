// A real worker's /metrics against real Prometheus tooling: Debian's `promtool check metrics`
// finds nothing to say about it after the worker handled records of every outcome, and Debian's
// `prometheus` server scrapes it and answers a kbus metric back through its HTTP API.
// Both run on the embedded broker only: what they check does not depend on the broker.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "it_support.hpp"
#include "kbus/json.hpp"
#include "kbus/log.hpp"
#include "kbus/ops/server.hpp"
#include "promtool.hpp"
#include "exposition.hpp"

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::seconds;

constexpr const char* kPrometheus = "/usr/bin/prometheus";

// A worker on its own thread, serving its operations port on a free one.
class Running {
 public:
  Running(kbus::kafka::WorkerConfig config, const kbus::HandlerRegistry& handlers)
      : worker_(std::move(config), handlers), thread_([this] { worker_.Run(); }) {}
  ~Running() {
    worker_.Stop();
    thread_.join();
  }
  kbus::kafka::Worker& worker() { return worker_; }

 private:
  kbus::kafka::Worker worker_;
  std::thread thread_;
};

// `count` Work commands with ids [0, count).
void SendWork(const std::string& topic, int count) {
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 0; i < count; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(it::Work{i, "t" + std::to_string(i % 3), "x"}, {.topic = topic})).ok());
  }
  ASSERT_TRUE(producer.Flush(seconds(60)).ok());
}


using kbus::test::FreePort;

// A fresh directory under the system's temporary one, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kbus-prometheus-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A Prometheus server as a child process, its output in `log`. Stopped (SIGTERM, then SIGKILL
// after 5 s) when this object goes, whichever way the test leaves; killed by the kernel if the
// test process dies first.
class PrometheusProcess {
 public:
  PrometheusProcess(const std::filesystem::path& config, const std::filesystem::path& data,
                    const std::filesystem::path& log, int port)
      : log_(log) {
    const std::vector<std::string> args = {kPrometheus,
                                           "--config.file=" + config.string(),
                                           "--storage.tsdb.path=" + data.string(),
                                           "--web.listen-address=127.0.0.1:" + std::to_string(port),
                                           "--log.level=warn"};
    // Everything the child needs is made before fork: this process has other threads, and the
    // child may only make async-signal-safe calls until it execs.
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    if (fd >= 0) close(fd);
  }
  ~PrometheusProcess() {
    if (pid_ <= 0 || Exited()) return;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (!Exited() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!Exited()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  PrometheusProcess(const PrometheusProcess&) = delete;
  PrometheusProcess& operator=(const PrometheusProcess&) = delete;

  bool started() const { return pid_ > 0; }
  // True once the process ended (reaped here).
  bool Exited() {
    if (exited_) return true;
    exited_ = waitpid(pid_, nullptr, WNOHANG) == pid_;
    return exited_;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

// The value of an instant query's first sample, if Prometheus answered one.
std::optional<double> Query(int port, const std::string& promql) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
  if (!res || res->status != 200) return std::nullopt;
  // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[t,"N"]}]}}
  kbus::JsonDocument doc;
  if (!doc.Parse(res->body).ok()) return std::nullopt;
  const auto data = doc.Root().Find("data");
  const auto result = data ? data->Find("result") : std::nullopt;
  if (!result || !result->IsArray() || result->Size() == 0) return std::nullopt;
  const auto value = result->At(0).Find("value");
  if (!value || !value->IsArray() || value->Size() != 2 || !value->At(1).IsString()) return std::nullopt;
  return std::strtod(std::string(value->At(1).GetString()).c_str(), nullptr);
}

// Handles Work: ids divisible by 10 are dead-lettered, ids divisible by 7 fail once and are
// retried, the rest are acknowledged. So every outcome has a series with a value.
struct Outcomes {
  it::Tally tally;
  std::mutex mu;
  std::set<std::int64_t> retried;
};

void RegisterWork(kbus::HandlerRegistry& handlers, const std::string& topic, Outcomes& o) {
  handlers.Handle<it::Work>(
      [&o](const it::Work& w, kbus::Context&) -> kbus::Outcome {
        o.tally.Add(w.id);
        if (w.id % 10 == 0) return kbus::DeadLetter("ids divisible by ten are refused");
        if (w.id % 7 == 0) {
          std::lock_guard lock(o.mu);
          if (o.retried.insert(w.id).second) return kbus::Retry(std::chrono::milliseconds(10), "once");
        }
        return kbus::Ack();
      },
      {.topic = topic});
}

TEST(WorkerMetrics, PassPromtoolAfterTheWorkerHandledRecordsOfEveryOutcome) {
  const std::string topic = TestBroker::UniqueName("it-promtool");
  TestBroker::Get().CreateTopic(topic, 2);
  constexpr int kRecords = 60;
  Outcomes outcomes;
  it::Tally& tally = outcomes.tally;
  kbus::HandlerRegistry handlers;
  RegisterWork(handlers, topic, outcomes);
  kbus::kafka::WorkerConfig config = it::WorkerConfigFor(TestBroker::UniqueName("g-promtool"));
  config.http_port = -1;
  config.http_bind_address = "127.0.0.1";
  Running running(config, handlers);
  const int port = running.worker().http_port();
  ASSERT_GT(port, 0);
  SendWork(topic, kRecords);
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == static_cast<std::size_t>(kRecords); }, seconds(60)));

  const auto handled = [&](const char* outcome) {
    return "kbus_worker_records_handled_total{group=\"" + config.group + "\",type=\"it.Work\",outcome=\"" +
           outcome + "\"}";
  };
  std::string text;
  // 6 ids divisible by ten dead-lettered; 8 more divisible by seven retried once, then acked.
  ASSERT_TRUE(WaitFor([&] {
    text = kbus::ops::Get("127.0.0.1", port, "/metrics").body;
    return kbus::test::SampleValue(text, handled("acked")) == 54.0 && kbus::test::SampleValue(text, handled("dead_lettered")) == 6.0 &&
           kbus::test::SampleValue(text, handled("retried")) == 8.0;
  }, seconds(30))) << text;
  const kbus::test::PromtoolResult check = kbus::test::CheckMetrics(text);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n--- /metrics ---\n" << text;
  EXPECT_EQ(check.output, "") << text;
}

TEST(WorkerMetrics, ARealPrometheusScrapesTheWorkerAndAnswersAKbusMetricBack) {
  ASSERT_EQ(access(kPrometheus, X_OK), 0)
      << kPrometheus << " is missing: install Debian's prometheus package (scripts/install-deps.sh)";
  const std::string topic = TestBroker::UniqueName("it-prometheus");
  TestBroker::Get().CreateTopic(topic, 2);
  constexpr int kRecords = 40;
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>([&tally](const it::Work& w, kbus::Context&) { tally.Add(w.id); }, {.topic = topic});
  kbus::kafka::WorkerConfig config = it::WorkerConfigFor(TestBroker::UniqueName("g-prometheus"));
  config.http_port = -1;
  config.http_bind_address = "127.0.0.1";
  Running running(config, handlers);
  const int worker_port = running.worker().http_port();
  ASSERT_GT(worker_port, 0);
  SendWork(topic, kRecords);
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == static_cast<std::size_t>(kRecords); }, seconds(60)));

  TempDir dir;
  const auto config_file = dir.path() / "prometheus.yml";
  {
    std::ofstream yml(config_file);
    yml << "global:\n"
           "  scrape_interval: 1s\n"
           "  scrape_timeout: 1s\n"
           "scrape_configs:\n"
           "  - job_name: kbus\n"
           "    static_configs:\n"
           "      - targets: ['127.0.0.1:"
        << worker_port << "']\n";
  }
  const int prometheus_port = FreePort();
  ASSERT_GT(prometheus_port, 0);
  PrometheusProcess prometheus(config_file, dir.path() / "data", dir.path() / "prometheus.log", prometheus_port);
  ASSERT_TRUE(prometheus.started());

  // First the target is up: Prometheus runs, reached the worker and parsed its scrape.
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  std::optional<double> up;
  while (std::chrono::steady_clock::now() < deadline && !prometheus.Exited()) {
    up = Query(prometheus_port, "up{job=\"kbus\"}");
    if (up == 1.0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(up, 1.0) << "the worker's target never came up in Prometheus; its log:\n" << prometheus.Log();

  // Then a kbus metric comes back with the worker's value.
  const std::string query = "kbus_worker_records_handled_total{group=\"" + config.group +
                            "\",type=\"it.Work\",outcome=\"acked\"}";
  std::optional<double> handled;
  while (std::chrono::steady_clock::now() < deadline && !prometheus.Exited()) {
    handled = Query(prometheus_port, query);
    if (handled == static_cast<double>(kRecords)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(handled, static_cast<double>(kRecords)) << query << "\nPrometheus's log:\n" << prometheus.Log();
  // The histogram made it through too, as a _count series.
  EXPECT_EQ(Query(prometheus_port, "kbus_worker_handler_duration_seconds_count{group=\"" + config.group +
                                       "\",type=\"it.Work\"}"),
            static_cast<double>(kRecords));
  EXPECT_FALSE(prometheus.Exited()) << prometheus.Log();
}

}  // namespace
