// kbus console: the console's HTTP API and web page (docs/console.md), served until SIGINT or
// SIGTERM. Reads only Kafka; changes something only when asked by a request that carries the
// token (KBUS_CONSOLE_TOKEN).

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/console/console.hpp"
#include "kbus/log.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCommand = "console";
constexpr std::string_view kUsage = "kbus console --brokers B [--port 8088] [--bind 127.0.0.1] [options]";
constexpr std::string_view kSummary =
    "Serves the console: a web page and a JSON API over the workflows, launcher jobs, dead\n"
    "letters and schedules of a kbus system, read from its topics (found by kbus's naming\n"
    "rules, or named here). Read-only unless KBUS_CONSOLE_TOKEN (or --token-file) gives the\n"
    "token that actions (redrive, cancel, pause, resume) must carry. Binds to loopback unless\n"
    "told otherwise. Prints `console http://ADDRESS:PORT/` once it listens.";

struct Args {
  ClientOptions client;
  std::string bind = "127.0.0.1";
  int port = 8088;
  std::string token_file;
  std::vector<std::string> state_topics, event_topics, dlq_groups, lag_groups;
  std::string schedules_topic = "kbus.schedules";
  std::string control_topic = "kbus.launcher.control";
  bool no_discover = false;
  std::string topic_prefix;
  std::size_t finished_jobs = 10000;
  std::string silent_after = "60s";
};

po::options_description Describe(Args& args) {
  po::options_description desc("kbus console options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("bind", po::value(&args.bind)->default_value(args.bind)->value_name("ADDRESS"),
                     "the address to listen on; 0.0.0.0 for every interface (a container)")(
      "port", po::value(&args.port)->default_value(args.port), "the TCP port; 0 for any free one")(
      "token-file", po::value(&args.token_file)->value_name("PATH"),
      "read the actions' token from this file instead of KBUS_CONSOLE_TOKEN")(
      "state-topic", po::value(&args.state_topics)->value_name("TOPIC"),
      "a workflow state topic to read besides those found (*.state); repeatable")(
      "events-topic", po::value(&args.event_topics)->value_name("TOPIC"),
      "a topic the launcher's events go to, besides kbus.launcher.events and each workflow's *.in; repeatable")(
      "dlq-group", po::value(&args.dlq_groups)->value_name("GROUP"),
      "a consumer group whose GROUP.dlq to read besides those found; repeatable")(
      "lag-group", po::value(&args.lag_groups)->value_name("GROUP"),
      "a consumer group whose lag to show besides those with a dead-letter topic; repeatable")(
      "schedules-topic", po::value(&args.schedules_topic)->default_value(args.schedules_topic)->value_name("TOPIC"),
      "the schedules topic")(
      "control-topic", po::value(&args.control_topic)->default_value(args.control_topic)->value_name("TOPIC"),
      "where a job's cancel is sent (the launcher's control topic)")(
      "no-discover", po::bool_switch(&args.no_discover), "read only the topics named by the options above")(
      "topic-prefix", po::value(&args.topic_prefix)->value_name("PREFIX"),
      "discover only topics whose names start with PREFIX (one system of several on a cluster)")(
      "finished-jobs", po::value(&args.finished_jobs)->default_value(args.finished_jobs)->value_name("N"),
      "finished launcher attempts kept in memory, the oldest forgotten first")(
      "silent-after", po::value(&args.silent_after)->default_value(args.silent_after)->value_name("DURATION"),
      "a running job with no event for this long is shown as silent");
  return desc;
}

// The token: KBUS_CONSOLE_TOKEN, or the first line of --token-file. Never logged.
Result<std::string> ReadToken(const Args& args, const ParsedArgs& parsed) {
  if (args.token_file.empty()) {
    const char* env = std::getenv("KBUS_CONSOLE_TOKEN");
    return std::string(env ? env : "");
  }
  std::ifstream in(args.token_file);
  if (!in) {
    return Error(ErrorCode::kInvalidArgument, parsed.Spelling("token-file") + " " + args.token_file + ": cannot be read");
  }
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) {
    return Error(ErrorCode::kInvalidArgument, parsed.Spelling("token-file") + " " + args.token_file + " is empty");
  }
  return token;
}

}  // namespace

void PrintConsoleHelp(std::ostream& os) {
  Args args;
  PrintHelp(os, kUsage, kSummary, Describe(args));
}

int RunConsole(const std::vector<std::string>& argv) {
  Args args;
  const auto desc = Describe(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kCommand, parsed.error());
  if (parsed->help()) {
    PrintConsoleHelp(std::cout);
    return kExitOk;
  }
  console::ConsoleConfig config;
  if (Status s = ApplyClientOptions(args.client, *parsed, "console", config.client); !s.ok()) {
    return Report(kCommand, s.error());
  }
  if (args.port < 0 || args.port > 65535) {
    return ReportUsage(kCommand, parsed->Spelling("port") + " " + std::to_string(args.port) +
                                     " is not a port number (0-65535)");
  }
  if (args.bind.empty()) return ReportUsage(kCommand, parsed->Spelling("bind") + " must name an address");
  if (args.finished_jobs < 1) return ReportUsage(kCommand, parsed->Spelling("finished-jobs") + " must be at least 1");
  auto silent = ParseDelay(args.silent_after, parsed->Spelling("silent-after"));
  if (!silent.ok()) return Report(kCommand, silent.error());
  if (*silent <= std::chrono::milliseconds(0)) {
    return ReportUsage(kCommand, parsed->Spelling("silent-after") + " must be positive");
  }
  auto token = ReadToken(args, *parsed);
  if (!token.ok()) return Report(kCommand, token.error());
  config.bind_address = args.bind;
  config.port = args.port;
  config.token = std::move(*token);
  config.state_topics = args.state_topics;
  config.event_topics = args.event_topics;
  config.dlq_groups = args.dlq_groups;
  config.lag_groups = args.lag_groups;
  config.schedules_topic = args.schedules_topic;
  config.launcher_control_topic = args.control_topic;
  config.discover = !args.no_discover;
  config.topic_prefix = args.topic_prefix;
  config.finished_jobs = args.finished_jobs;
  config.silent_after = *silent;

  InstallStopSignals();
  try {
    console::Console console(config);
    const bool read_only = config.token.empty();
    Log(LogLevel::kInfo, "console serving",
        {{"address", args.bind}, {"port", console.port()}, {"actions", read_only ? "off (read-only)" : "on"}});
    std::cout << "console http://" << (args.bind == "0.0.0.0" ? std::string("127.0.0.1") : args.bind) << ":"
              << console.port() << "/" << std::endl;  // endl: scripts wait for this line
    while (!StopRequested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Log(LogLevel::kInfo, "console stopping");
  } catch (const std::invalid_argument& e) {
    return ReportUsage(kCommand, MaskSecrets(e.what(), config.client.properties));
  } catch (const std::exception& e) {
    return Report(kCommand, Error(ErrorCode::kTransport, MaskSecrets(e.what(), config.client.properties)));
  }
  return kExitOk;
}

}  // namespace kbus::cli
