// kbus-scheduler: delivers delayed messages and fires recurring schedules (docs/schedules.md).
//
//   kbus-scheduler --brokers HOST:PORT [--group kbus.scheduler] [--http-port 8080]
//
// Run one or more: the instances share the pending and schedules topics' partitions through
// their consumer group, and a partition's messages and schedules move to another instance when
// its owner stops or crashes. SIGTERM or SIGINT: finish the sends under way, leave the group,
// exit 0. Every option can also come from the environment: KBUS_BROKERS, KBUS_GROUP, ... (--help).

#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "kbus/cli/options.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/log.hpp"
#include "kbus/ops/server.hpp"
#include "kbus/schedules/scheduler.hpp"

namespace po = boost::program_options;
namespace cli = kbus::cli;
using kbus::Status;

namespace {

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  cli::SetProgramName("kbus-scheduler");
  kbus::schedules::SchedulerConfig config;
  cli::ClientOptions client;
  std::int64_t prefetch_ms = config.prefetch.count();
  std::int64_t session_timeout_ms = config.session_timeout.count();
  std::string run_topics;
  for (const auto& t : config.run_topics) run_topics += (run_topics.empty() ? "" : ",") + t;
  std::string known_types;
  int http_port = 0;
  po::options_description desc("Options (each also from KBUS_<NAME>, e.g. KBUS_PENDING_TOPIC)", cli::kHelpWidth);
  cli::AddClientOptions(desc, client);
  desc.add_options()
      ("group", po::value(&config.group)->default_value(config.group)->value_name("GROUP"),
       "the consumer group the scheduler's instances share")
      ("pending-topic", po::value(&config.pending_topic)->default_value(config.pending_topic)->value_name("TOPIC"),
       "where delayed messages wait (compacted)")
      ("schedules-topic", po::value(&config.schedules_topic)->default_value(config.schedules_topic)->value_name("TOPIC"),
       "where schedules live (compacted)")
      ("run-topics", po::value(&run_topics)->default_value(run_topics)->value_name("LIST"),
       "comma-separated topics whose events end scheduled runs")
      ("known-types", po::value(&known_types)->value_name("LIST"),
       "comma-separated command types a schedule may send; a schedule of another type is refused "
       "(default: any type)")
      ("prefetch-ms", po::value(&prefetch_ms)->default_value(prefetch_ms)->value_name("MS"),
       "how long before its time a delayed message is read back into memory")
      ("session-timeout-ms", po::value(&session_timeout_ms)->default_value(session_timeout_ms)->value_name("MS"),
       "a crashed instance's partitions move to the others after this long")
      ("http-port", po::value(&http_port)->default_value(0)->value_name("PORT"),
       "serve /healthz, /readyz and /metrics on this port (0: off)")
      ("help,h", "show this help");

  auto parsed = cli::ParseArgs({argv + 1, argv + argc}, desc);
  if (!parsed.ok()) return cli::Report("", parsed.error());
  if (parsed->help()) {
    cli::PrintHelp(std::cout, "kbus-scheduler --brokers B [options]",
                   "Delivers delayed messages at their time and fires recurring schedules, one\n"
                   "command per tick across all instances. With --brokers embedded it starts a\n"
                   "broker inside this process.",
                   desc);
    return cli::kExitOk;
  }
  if (Status s = cli::ApplyServiceClientOptions(client, *parsed, config.client); !s.ok()) {
    return cli::Report("", s.error());
  }
  config.client.client_id = "kbus-scheduler";
  config.prefetch = std::chrono::milliseconds(prefetch_ms);
  config.session_timeout = std::chrono::milliseconds(session_timeout_ms);
  config.run_topics = SplitList(run_topics);
  config.known_types = SplitList(known_types);
  if (http_port < 0 || http_port > 65535) {
    return cli::ReportUsage("", parsed->Spelling("http-port") + " must be from 0 to 65535");
  }
  if (Status s = kbus::schedules::Validate(config); !s.ok()) {
    return cli::ReportUsage("", "--" + s.error().message());
  }

  try {
    cli::InstallStopSignals();
    auto embedded = kbus::kafka::StartEmbeddedIfRequested(config.client.brokers);
    auto metrics = std::make_shared<kbus::metrics::Registry>();
    auto health = std::make_shared<kbus::health::Board>();
    config.metrics = metrics;
    config.health = health;
    kbus::schedules::Scheduler scheduler(config);
    std::optional<kbus::ops::Server> server;
    if (http_port > 0) server.emplace(kbus::ops::ServerConfig{.port = http_port, .origin = parsed->Spelling("http-port")}, *metrics, *health);
    std::thread stopper([&] {
      while (!cli::StopRequested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      scheduler.Stop();
    });
    scheduler.Run();
    cli::InstallStopSignals();
    stopper.detach();
    const auto stats = scheduler.Stats();
    kbus::Log(kbus::LogLevel::kInfo, "scheduler exiting", {{"delivered", stats.delivered}, {"fired", stats.fired}});
  } catch (const std::exception& e) {
    std::cerr << "kbus-scheduler: " << e.what() << "\n";
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}
