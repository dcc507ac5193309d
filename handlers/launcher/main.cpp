// kbus-launcher: runs allow-listed programs for LaunchProcess commands and reports their
// lifecycle as events (docs/launcher.md).
//
//   kbus-launcher --brokers HOST:PORT --allow-list /etc/kbus/launcher.allow [--max-processes 8]
//
// Launch commands are read from --launch-topic and cancels from --control-topic, in one
// consumer group (--group, default kbus-launcher) with the range assignor, so partition N of
// both topics goes to the same launcher. SIGTERM or SIGINT: stop taking commands, terminate the
// running processes (SIGTERM, --kill-grace-ms, SIGKILL), report them as lost, commit, exit 0;
// a second one exits at once (128 + the signal). With --http-port it serves /healthz, /readyz
// and /metrics: the worker's and the launcher's (docs/operations.md).
// With --backend docker each job runs in a container of its own on the engine at
// --docker-socket, and jobs outlive the launcher: a launcher that starts or takes over a
// partition adopts the containers of its commands (docs/launcher.md, "The Docker backend").
// Every option can also come from the environment: KBUS_BROKERS, KBUS_ALLOW_LIST, ... (--help).

#include <unistd.h>

#include <memory>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "kbus/cli/options.hpp"
#include "kbus/handlers/docker_backend.hpp"
#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/handlers/producer_sink.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"

namespace po = boost::program_options;
namespace cli = kbus::cli;
using kbus::Status;

namespace {

kbus::Result<kbus::handlers::AllowList> ReadAllowList(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return kbus::Error(kbus::ErrorCode::kInvalidArgument,
                       "--allow-list: cannot read '" + path + "'");
  }
  std::stringstream text;
  text << in.rdbuf();
  auto allow = kbus::handlers::AllowList::Parse(text.str());
  if (!allow.ok()) {
    return kbus::Error(kbus::ErrorCode::kInvalidArgument,
                       "--allow-list " + path + ": " + allow.error().message());
  }
  return allow;
}

}  // namespace

int main(int argc, char** argv) {
  cli::SetProgramName("kbus-launcher");
  kbus::kafka::WorkerConfig config;
  config.group = "kbus-launcher";
  cli::WorkerOptions options;
  std::string allow_path;
  std::string launch_topic(kbus::handlers::kLauncherTopic);
  std::string control_topic(kbus::handlers::kLauncherControlTopic);
  kbus::handlers::LauncherConfig launcher_config;
  std::int64_t kill_grace_ms = launcher_config.kill_grace.count();
  std::int64_t heartbeat_ms = launcher_config.default_heartbeat.count();
  std::string reply_topics;
  std::string backend_name = "local";
  std::string docker_socket = kbus::handlers::DockerConfig{}.socket;
  for (const auto& t : launcher_config.reply_topics) reply_topics += (reply_topics.empty() ? "" : ",") + t;
  po::options_description desc("Options (each also from KBUS_<NAME>, e.g. KBUS_ALLOW_LIST)",
                               cli::kHelpWidth);
  cli::AddWorkerOptions(desc, options, config);
  desc.add_options()
      ("allow-list", po::value(&allow_path)->value_name("FILE"),
       "the programs it may run (required; format in docs/launcher.md)")
      ("backend", po::value(&backend_name)->default_value(backend_name)->value_name("NAME"),
       "how jobs run: local (child processes of the launcher) or docker (a container each, through the "
       "engine at --docker-socket; the allow-list names images)")
      ("docker-socket", po::value(&docker_socket)->default_value(docker_socket)->value_name("PATH"),
       "the Docker engine's API socket, for --backend docker")
      ("max-processes", po::value(&launcher_config.max_processes)->default_value(launcher_config.max_processes)->value_name("N"),
       "processes at once; when full it pauses its partitions until one ends")
      ("kill-grace-ms", po::value(&kill_grace_ms)->default_value(kill_grace_ms)->value_name("MS"),
       "between SIGTERM and SIGKILL, on timeout, cancel and shutdown")
      ("heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms)->value_name("MS"),
       "heartbeat interval for commands that set none")
      ("reply-topics", po::value(&reply_topics)->default_value(reply_topics)->value_name("LIST"),
       "the topics a command's reply_to may name: comma-separated names or patterns, '*' matching any "
       "run of characters; a launch replying elsewhere is dead-lettered")
      ("launch-topic", po::value(&launch_topic)->default_value(launch_topic)->value_name("TOPIC"),
       "where LaunchProcess commands arrive")
      ("control-topic", po::value(&control_topic)->default_value(control_topic)->value_name("TOPIC"),
       "where CancelProcess commands arrive; as many partitions as --launch-topic")
      ("help,h", "show this help");

  auto parsed = cli::ParseArgs({argv + 1, argv + argc}, desc);
  if (!parsed.ok()) return cli::Report("", parsed.error());
  if (parsed->help()) {
    cli::PrintHelp(std::cout, "kbus-launcher --brokers B --allow-list FILE [options]",
                   "Runs allow-listed programs for kbus.LaunchProcess commands and publishes\n"
                   "kbus.ProcessStarted/Progress/Heartbeat/Exited events to each command's reply_to.\n"
                   "With --brokers embedded it starts a broker inside this process.",
                   desc);
    return cli::kExitOk;
  }
  if (Status s = cli::ApplyWorkerOptions(options, *parsed, config); !s.ok()) {
    return cli::Report("", s.error());
  }
  if (config.assignment_strategy != "range") {
    return cli::ReportUsage("", "--assignment-strategy must be range for the launcher: partition N of "
                                "the launch and control topics must go to the same launcher");
  }
  if (allow_path.empty()) return cli::ReportUsage("", "--allow-list is required");
  if (launcher_config.max_processes < 1) {
    return cli::ReportUsage("", parsed->Spelling("max-processes") + " must be at least 1");
  }
  if (kill_grace_ms < 0 || kill_grace_ms > kbus::handlers::kMaxKillGrace.count()) {
    return cli::ReportUsage("", parsed->Spelling("kill-grace-ms") + " must be from 0 to " +
                                    std::to_string(kbus::handlers::kMaxKillGrace.count()));
  }
  if (heartbeat_ms < kbus::handlers::kMinHeartbeatInterval.count() ||
      heartbeat_ms > kbus::handlers::kMaxHeartbeatInterval.count()) {
    return cli::ReportUsage("", parsed->Spelling("heartbeat-ms") + " must be from " +
                                    std::to_string(kbus::handlers::kMinHeartbeatInterval.count()) + " to " +
                                    std::to_string(kbus::handlers::kMaxHeartbeatInterval.count()));
  }
  auto replies = kbus::handlers::ParseReplyTopics(reply_topics);
  if (!replies.ok()) return cli::ReportUsage("", parsed->Spelling("reply-topics") + ": " + replies.error().message());
  launcher_config.reply_topics = std::move(replies.value());
  if (launch_topic.empty() || control_topic.empty() || launch_topic == control_topic) {
    return cli::ReportUsage("", "--launch-topic and --control-topic must be two different topics");
  }
  if (backend_name != "local" && backend_name != "docker") {
    return cli::ReportUsage("", parsed->Spelling("backend") + " must be local or docker, not '" + backend_name + "'");
  }
  if (backend_name == "docker" && docker_socket.empty()) {
    return cli::ReportUsage("", parsed->Spelling("docker-socket") + " must name the engine's socket");
  }
  auto allow = ReadAllowList(allow_path);
  if (!allow.ok()) return cli::Report("", allow.error());
  if (backend_name == "docker") {
    if (Status s = kbus::handlers::DockerBackend::Check(allow.value()); !s.ok()) {
      return cli::Report("", kbus::Error(kbus::ErrorCode::kInvalidArgument, "--allow-list " + allow_path + ": " + s.error().message()));
    }
  } else {
    for (const auto& [name, program] : allow.value().programs()) {
      if (!program.container.image.empty()) {
        return cli::Report("", kbus::Error(kbus::ErrorCode::kInvalidArgument,
                                           "--allow-list " + allow_path + ": program '" + name + "' names an image ('" +
                                               name + ".image'), which only --backend docker runs"));
      }
    }
  }
  launcher_config.kill_grace = std::chrono::milliseconds(kill_grace_ms);
  launcher_config.default_heartbeat = std::chrono::milliseconds(heartbeat_ms);
  launcher_config.host = config.host;
  if (launcher_config.host.empty()) {
    // The worker fills in its own copy of the config; ProcessStarted and the launcher's probe
    // need the name too.
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0) launcher_config.host = name;
  }
  // A full launcher pauses; what it fetched before stays small.
  config.max_buffered_per_partition = std::min<std::size_t>(config.max_buffered_per_partition, 1000);
  config.client.properties.try_emplace("queued.max.messages.kbytes", "4096");

  try {
    cli::InstallTwoStepStopSignals();  // from here on a SIGTERM stops it cleanly, even before the worker runs
    auto embedded = kbus::kafka::StartEmbeddedIfRequested(config.client.brokers);
    kbus::kafka::ProducerConfig producer_config;
    producer_config.client = config.client;
    producer_config.client.properties.erase("queued.max.messages.kbytes");  // a consumer property
    // Starts and exits are waited for (a launch is acknowledged after its ProcessStarted), and
    // events are few: send each at once rather than wait to batch them.
    producer_config.linger = std::chrono::milliseconds(0);
    kbus::kafka::Producer producer(producer_config);
    kbus::handlers::ProducerSink sink(producer);
    kbus::handlers::LocalProcessBackend local;
    std::unique_ptr<kbus::handlers::DockerBackend> docker;
    if (backend_name == "docker") {
      docker = std::make_unique<kbus::handlers::DockerBackend>(kbus::handlers::DockerConfig{docker_socket, config.group});
      if (Status s = docker->Ping(); !s.ok()) {
        return cli::Report("", kbus::Error(kbus::ErrorCode::kInvalidArgument, parsed->Spelling("docker-socket") + ": " + s.error().message()));
      }
    }
    kbus::handlers::Backend& backend = docker ? static_cast<kbus::handlers::Backend&>(*docker) : local;
    // One registry and board for the worker and the launcher, declared before both, so that
    // the launcher's series and probe outlive neither.
    auto metrics = std::make_shared<kbus::metrics::Registry>();
    auto health = std::make_shared<kbus::health::Board>();
    config.metrics = metrics;
    config.health = health;
    kbus::handlers::Launcher launcher(launcher_config, std::move(allow.value()), backend, sink);
    launcher.ReportTo(*metrics, *health);
    kbus::HandlerRegistry handlers;
    kbus::HandlerOptions launch;
    launch.topic = launch_topic;
    kbus::HandlerOptions cancel;
    cancel.topic = control_topic;
    launcher.Register(handlers, std::move(launch), std::move(cancel));
    if (docker) {
      // Containers outlive a launcher: the owner of a launch partition follows its kept jobs.
      auto labels = [launch_topic](const std::vector<kbus::kafka::TopicPartition>& parts) {
        std::vector<std::string> out;
        for (const auto& p : parts) {
          if (p.topic == launch_topic) out.push_back(kbus::handlers::Launcher::PartitionLabel(p.topic, p.partition));
        }
        return out;
      };
      config.on_assigned = [&launcher, labels](const auto& parts) { launcher.Adopt(labels(parts)); };
      config.on_revoked = [&launcher, labels](const auto& parts) { launcher.LetGo(labels(parts)); };
    }

    kbus::kafka::Worker worker(config, handlers);
    cli::StopWorkerOnSignal(&worker);  // a signal that came before stops it now
    kbus::Log(kbus::LogLevel::kInfo, "launcher running",
              {{"group", config.group}, {"launch_topic", launch_topic}, {"control_topic", control_topic},
               {"max_processes", launcher_config.max_processes}, {"reply_topics", reply_topics},
               {"backend", std::string(backend.name())}});
    worker.Run();  // returns after Stop(): nothing more is taken, the launches are committed
    cli::StopWorkerOnSignal(nullptr);
    health->SetShuttingDown();
    launcher.Shutdown();  // terminates what runs and reports it
    if (Status s = producer.Flush(std::chrono::seconds(10)); !s.ok()) {
      kbus::Log(kbus::LogLevel::kWarn, "events not flushed", {{"error", s.error().message()}});
    }
    const auto stats = launcher.Stats();
    kbus::Log(kbus::LogLevel::kInfo, "launcher stopped",
              {{"started", stats.started}, {"exited", stats.exited},
               {"launch_failed", stats.launch_failed}, {"duplicates", stats.duplicates},
               {"adopted", stats.adopted}, {"left_running", stats.detached}});
  } catch (const std::exception& e) {
    std::cerr << "kbus-launcher: " << e.what() << "\n";
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}
