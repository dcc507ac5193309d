#pragma once
// The console (docs/console.md): reads a kbus system's workflow state topics, launcher event
// topics, dead-letter topics and schedules topic with readers of its own, keeps bounded indexes
// of them, and serves a JSON API and a web page over HTTP.
//
//   kbus::console::ConsoleConfig config;
//   config.client.brokers = "localhost:9092";
//   config.token = std::getenv("KBUS_CONSOLE_TOKEN");   // empty: read-only
//   kbus::console::Console console(config);              // serving until destroyed
//
// Topics: those named in the config, plus, unless discovery is off, those kbus's naming rules
// give among the topics the broker lists (every "*.state" a workflow's state, its "*.in" and
// kbus.launcher.events the launcher's events, every "*.dlq" a group's dead letters,
// kbus.schedules the schedules), looked up again every few seconds.
//
// Thread safety: the constructor and destructor run on the owner's thread; everything else
// happens on the console's own threads.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kbus/kafka/config.hpp"

namespace kbus::console {

struct ConsoleConfig {
  kafka::ClientConfig client;
  std::string bind_address = "127.0.0.1";
  int port = 8088;  // 0: any free port (port() tells which)
  // Actions (redrive, cancel, pause, resume) need "Authorization: Bearer <token>"; empty: the
  // console is read-only and refuses every action.
  std::string token;

  // Topics read in any case; discovery adds to them.
  std::vector<std::string> state_topics;
  std::vector<std::string> event_topics;
  std::vector<std::string> dlq_groups;  // reads "<group>.dlq"
  std::string schedules_topic = "kbus.schedules";
  std::string launcher_control_topic = "kbus.launcher.control";  // where a cancel goes
  bool discover = true;
  // Discovery only considers topics whose names start with this (one system among several on a
  // cluster, e.g. "shop."); empty: every topic.
  std::string topic_prefix;
  std::chrono::milliseconds discover_interval{std::chrono::seconds(5)};
  // Consumer groups whose lag the totals show (with those of the "*.dlq" topics).
  std::vector<std::string> lag_groups;
  std::chrono::milliseconds lag_interval{std::chrono::seconds(10)};

  // Index bounds.
  std::size_t finished_jobs = 10000;
  std::size_t steps_per_instance = 16;
  std::chrono::milliseconds silent_after{std::chrono::seconds(60)};
};

// Refuses a config that cannot work, naming the field (kInvalidArgument).
class Console {
 public:
  // Binds the port and starts reading. Throws std::invalid_argument for a bad config value and
  // std::runtime_error when the port cannot be bound; both name the field or port.
  explicit Console(ConsoleConfig config);
  ~Console();  // stops serving and reading
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  int port() const;
  // True once every topic found at the start was read to the end it had then.
  bool caught_up() const;

  struct Stats {
    std::size_t instances = 0, jobs = 0, dead_letters = 0, records_read = 0;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::console
