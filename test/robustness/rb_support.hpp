#pragma once
// Shared pieces of the robustness tests: worker processes (started by the tests, configured by
// the worker programs) and a topic's watermarks, read straight from the broker.

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kbus/kafka/worker.hpp"

extern "C" char** environ;

namespace rb {

// Starts a worker program with this process's environment; returns its pid, or -1.
inline pid_t Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

// The configuration every worker program uses: test timings (a 6 s session, fast fetches and
// commits), the library's defaults otherwise (max deliveries 5, backoff).
inline kbus::kafka::WorkerConfig ChildWorkerConfig(const std::string& brokers, const std::string& group) {
  kbus::kafka::WorkerConfig config;
  config.client.brokers = brokers;
  config.group = group;
  config.session_timeout = std::chrono::seconds(6);
  config.fetch_wait_max = std::chrono::milliseconds(10);
  config.commit_interval = std::chrono::milliseconds(200);
  return config;
}

// Waits for `pid` to exit, up to `timeout`: its exit code, 128 + the signal that ended it, or -1
// when it was still running (it is then killed with SIGKILL and reaped).
inline int WaitExit(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

// A program a test starts and owns. It gets SIGKILL when the test process dies (even by SIGKILL,
// as ctest does on a timeout: PR_SET_PDEATHSIG, set between fork and exec, survives the exec),
// and when the object is destroyed while it still runs (a failed assertion left the test early).
// So no orphan outlives its test, holding ctest's output pipe open until the timeout.
// Thread safety: one thread; the death signal follows the thread that constructed the object,
// which must live as long as the process (a test's main thread does).
class Process {
 public:
  explicit Process(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until the exec
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
      execve(argv[0], argv.data(), environ);
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&&) = delete;
  Process& operator=(Process&&) = delete;

  pid_t pid() const { return pid_ > 0 ? pid_ : reaped_; }
  bool started() const { return pid_ > 0 || reaped_ > 0; }
  // False once it exited (it is then reaped; exit_code() says how).
  bool Running() {
    int status = 0;
    if (pid_ <= 0) return false;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    Reaped(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return false;
  }
  // Sends `sig` and waits for the exit, as WaitExit does; returns its result.
  int Stop(int sig, std::chrono::seconds timeout) {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, sig);
    Reaped(WaitExit(pid_, timeout));
    return exit_code_;
  }
  // Its exit code, 128 + the signal that ended it, or -1 while it runs (or was stopped by force).
  int exit_code() const { return exit_code_; }

 private:
  void Reaped(int code) {
    exit_code_ = code;
    reaped_ = pid_;
    pid_ = -1;
  }
  pid_t pid_ = -1;
  pid_t reaped_ = -1;
  int exit_code_ = -1;
};

// Whether `pid` is gone: no such process, or a zombie nobody reaped yet.
inline bool Gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] == 'Z';
}

// The parent of `pid` (from /proc), or -1 when it is gone.
inline pid_t ParentOf(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return -1;
  const auto paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(line.substr(paren + 2));
  char state = 0;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

struct Watermark {
  std::int64_t low = -1;
  std::int64_t high = -1;
};

// Low and high watermark of each of the topic's `partitions`. Throws when the broker does not
// answer within 10 s per partition.
inline std::vector<Watermark> Watermarks(const std::string& bootstrap, const std::string& topic,
                                         int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (raw == nullptr) {
    rd_kafka_conf_destroy(conf);  // not taken when rd_kafka_new fails
    throw std::runtime_error(err);
  }
  const std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> rk(raw, &rd_kafka_destroy);
  std::vector<Watermark> out(static_cast<std::size_t>(partitions));
  for (int p = 0; p < partitions; ++p) {
    Watermark& w = out[static_cast<std::size_t>(p)];
    if (rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &w.low,
                                                                 &w.high, 10000)) {
      throw std::runtime_error("watermarks of " + topic + "/" + std::to_string(p) + ": " +
                               rd_kafka_err2str(e));
    }
  }
  return out;
}

// The offsets `group` has committed for the topic's `partitions` (-1001, RD_KAFKA_OFFSET_INVALID,
// where it has none). Reads them without joining the group. Throws on failure.
inline std::vector<std::int64_t> Committed(const std::string& bootstrap, const std::string& group,
                                           const std::string& topic, int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (raw == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  const std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> rk(raw, &rd_kafka_destroy);
  const std::unique_ptr<rd_kafka_topic_partition_list_t, void (*)(rd_kafka_topic_partition_list_t*)>
      list(rd_kafka_topic_partition_list_new(partitions), &rd_kafka_topic_partition_list_destroy);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  if (rd_kafka_resp_err_t e = rd_kafka_committed(rk.get(), list.get(), 10000)) {
    throw std::runtime_error("committed offsets of " + group + ": " + rd_kafka_err2str(e));
  }
  std::vector<std::int64_t> out(static_cast<std::size_t>(partitions), RD_KAFKA_OFFSET_INVALID);
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err) {
      throw std::runtime_error("committed offset of " + topic + "/" + std::to_string(tp.partition) +
                               ": " + rd_kafka_err2str(tp.err));
    }
    out[static_cast<std::size_t>(tp.partition)] = tp.offset;
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

}  // namespace rb
