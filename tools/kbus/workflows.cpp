// kbus workflows: the instances of a workflow as its state topic holds them, one JSON line each
// (docs/workflows.md, "The state record"): for an operator's questions such as "which videos
// are still running, at which attempt, with which timeouts pending?".

#include <chrono>
#include <iostream>
#include <string>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/state_topic.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCommand = "workflows";
constexpr std::string_view kUsage = "kbus workflows --brokers B [options] NAME";
constexpr std::string_view kSummary =
    "Prints the instances of workflow NAME, one state record per line (JSON, as stored in\n"
    "NAME.state): status, run, version, pending timeouts, the state. Reads every partition to\n"
    "its end; changes nothing.";

struct Args {
  ClientOptions client;
  std::string name;
  std::string state_topic;
  std::string id;
  std::string status;
  int timeout_ms = 30000;
};

po::options_description Describe(Args& args) {
  po::options_description desc("kbus workflows options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("state-topic", po::value(&args.state_topic)->value_name("TOPIC"),
                     "the state topic (default NAME.state)")(
      "id", po::value(&args.id)->value_name("ID"), "only this workflow id")(
      "status", po::value(&args.status)->value_name("S"), "only instances in status running, completed or failed")(
      "timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms),
      "how long reading one partition may take");
  return desc;
}

}  // namespace

void PrintWorkflowsHelp(std::ostream& os) {
  Args args;
  PrintHelp(os, kUsage, kSummary, Describe(args));
}

int RunWorkflows(const std::vector<std::string>& argv) {
  Args args;
  const auto desc = Describe(args);
  po::options_description hidden;
  hidden.add_options()("name", po::value(&args.name));
  po::positional_options_description positional;
  positional.add("name", 1);
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) return Report(kCommand, parsed.error());
  if (parsed->help()) {
    PrintWorkflowsHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyClientOptions(args.client, *parsed, "workflows", client); !s.ok()) {
    return Report(kCommand, s.error());
  }
  if (args.name.empty() && args.state_topic.empty()) return ReportUsage(kCommand, "name the workflow: NAME");
  if (!args.status.empty() && args.status != "running" && args.status != "completed" && args.status != "failed") {
    return ReportUsage(kCommand, parsed->Spelling("status") + " must be running, completed or failed, not '" +
                                     args.status + "'");
  }
  if (args.timeout_ms < 1) return ReportUsage(kCommand, parsed->Spelling("timeout-ms") + " must be positive");
  const std::string topic = args.state_topic.empty() ? args.name + ".state" : args.state_topic;
  try {
    auto topics = kafka::ListTopics(client, std::chrono::milliseconds(args.timeout_ms));
    if (!topics.ok()) return Report(kCommand, topics.error());
    int partitions = 0;
    for (const auto& t : *topics) {
      if (t.name == topic) partitions = t.partitions;
    }
    if (partitions == 0) {
      return Report(kCommand, Error(ErrorCode::kNotFound, "no topic '" + topic + "': is the workflow's name right?"));
    }
    kafka::StateTopic state(client, topic);
    for (int p = 0; p < partitions; ++p) {
      Status s = state.Load(
          p,
          [&](std::string_view key, std::string_view value, std::int64_t) {
            if (!args.id.empty() && key != args.id) return;
            if (!args.status.empty()) {
              JsonDocument doc;
              if (!doc.Parse(value).ok()) return;
              auto status = doc.Root().Find("status");
              if (!status || status->AsString() != args.status) return;
            }
            std::cout << value << '\n';
          },
          std::chrono::milliseconds(args.timeout_ms));
      if (!s.ok()) return Report(kCommand, s.error());
    }
    std::cout << std::flush;
  } catch (const std::invalid_argument& e) {
    return ReportUsage(kCommand, MaskSecrets(e.what(), client.properties));
  } catch (const std::exception& e) {
    return Report(kCommand, Error(ErrorCode::kTransport, MaskSecrets(e.what(), client.properties)));
  }
  return kExitOk;
}

}  // namespace kbus::cli
