// kbus topics create / list: topic administration through the Kafka admin API. The embedded
// broker has no admin API: its topics come from `kbus broker --topic` (create times out there,
// and says so).


#include <algorithm>
#include <chrono>
#include <exception>
#include <iostream>
#include <stdexcept>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/log.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCreate = "topics create";
constexpr std::string_view kCreateUsage =
    "kbus topics create --brokers B [options] NAME[:PARTITIONS]...";
constexpr std::string_view kCreateSummary =
    "Creates topics on a Kafka cluster; a topic that exists already counts as created.\n"
    "Prints `NAME PARTITIONS` per topic requested. The embedded broker has no admin\n"
    "API: create its topics with `kbus broker --topic NAME:PARTITIONS`.";
constexpr std::string_view kList = "topics list";
constexpr std::string_view kListUsage = "kbus topics list --brokers B [options]";
constexpr std::string_view kListSummary =
    "Prints `NAME PARTITIONS` for every topic the cluster knows, sorted by name.";

struct CreateArgs {
  ClientOptions client;
  std::vector<std::string> names;
  int partitions = 4;
  int replication_factor = -1;
  std::vector<std::string> configs;
  int timeout_ms = 30000;
};

po::options_description DescribeCreate(CreateArgs& args) {
  po::options_description desc("kbus topics create options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("partitions", po::value(&args.partitions)->default_value(args.partitions),
                     "partitions of each NAME without :PARTITIONS")(
      "replication-factor",
      po::value(&args.replication_factor)->default_value(args.replication_factor),
      "replicas per partition; -1 (write --replication-factor=-1) for the broker's default")(
      "config", po::value(&args.configs)->value_name("key=value"),
      "a topic config such as cleanup.policy=compact; repeatable (KBUS_CONFIG: one per line)")(
      "timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms),
      "how long the cluster may take to answer");
  return desc;
}

struct ListArgs {
  ClientOptions client;
  int timeout_ms = 10000;
};

po::options_description DescribeList(ListArgs& args) {
  po::options_description desc("kbus topics list options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms),
                     "how long the cluster may take to answer");
  return desc;
}

// Runs an admin call, turning a refused -X property (thrown by the library) into a usage error
// with secret values masked.
template <class Fn>
int RunAdmin(std::string_view command, const kafka::ClientConfig& client, Fn fn) {
  try {
    return fn();
  } catch (const std::invalid_argument& e) {
    return ReportUsage(command, MaskSecrets(e.what(), client.properties));
  } catch (const std::exception& e) {
    return Report(command, Error(ErrorCode::kTransport, MaskSecrets(e.what(), client.properties)));
  }
}

// CreateTopics puts this hint only on its own deadline, but librdkafka usually answers first,
// with a timed-out event ("Failed while waiting for controller: Local: Timed out"), which is what
// the embedded broker's missing admin API looks like.
}  // namespace

void PrintTopicsCreateHelp(std::ostream& os) {
  CreateArgs args;
  PrintHelp(os, kCreateUsage, kCreateSummary, DescribeCreate(args));
}

void PrintTopicsListHelp(std::ostream& os) {
  ListArgs args;
  PrintHelp(os, kListUsage, kListSummary, DescribeList(args));
}

int RunTopicsCreate(const std::vector<std::string>& argv) {
  CreateArgs args;
  const auto desc = DescribeCreate(args);
  po::options_description hidden;
  hidden.add_options()("name", po::value(&args.names));
  po::positional_options_description positional;
  positional.add("name", -1);
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) return Report(kCreate, parsed.error());
  if (parsed->help()) {
    PrintTopicsCreateHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyClientOptions(args.client, *parsed, "topics create", client); !s.ok()) {
    return Report(kCreate, s.error());
  }
  if (args.names.empty()) return ReportUsage(kCreate, "name at least one topic: NAME[:PARTITIONS]");
  if (args.partitions < 1) {
    return ReportUsage(kCreate, parsed->Spelling("partitions") + " must be at least 1");
  }
  if (args.replication_factor < 1 && args.replication_factor != -1) {
    return ReportUsage(kCreate, parsed->Spelling("replication-factor") +
                                    " must be at least 1, or -1 for the broker's default");
  }
  if (args.timeout_ms < 1) {
    return ReportUsage(kCreate, parsed->Spelling("timeout-ms") + " must be positive");
  }
  auto configs = ParseProperties(args.configs, parsed->Spelling("config"));
  if (!configs.ok()) return Report(kCreate, configs.error());

  std::vector<kafka::TopicSpec> specs;
  for (const auto& name : args.names) {
    auto topic = ParseTopicSpec(name, "topic", args.partitions);
    if (!topic.ok()) return Report(kCreate, topic.error());
    specs.push_back({topic->name, topic->partitions, args.replication_factor, *configs});
  }
  return RunAdmin(kCreate, client, [&] {
    const Status s = kafka::CreateTopics(client, specs, /*if_not_exists=*/true,
                                         std::chrono::milliseconds(args.timeout_ms));
    if (!s.ok()) return Report(kCreate, s.error());  // names `kbus broker --topic` on the embedded broker
    for (const auto& spec : specs) std::cout << spec.name << ' ' << spec.partitions << '\n';
    std::cout << std::flush;
    return kExitOk;
  });
}

int RunTopicsList(const std::vector<std::string>& argv) {
  ListArgs args;
  const auto desc = DescribeList(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kList, parsed.error());
  if (parsed->help()) {
    PrintTopicsListHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyClientOptions(args.client, *parsed, "topics list", client); !s.ok()) {
    return Report(kList, s.error());
  }
  if (args.timeout_ms < 1) {
    return ReportUsage(kList, parsed->Spelling("timeout-ms") + " must be positive");
  }
  return RunAdmin(kList, client, [&] {
    auto topics = kafka::ListTopics(client, std::chrono::milliseconds(args.timeout_ms));
    if (!topics.ok()) return Report(kList, topics.error());
    std::sort(topics->begin(), topics->end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    for (const auto& t : *topics) std::cout << t.name << ' ' << t.partitions << '\n';
    std::cout << std::flush;
    return kExitOk;
  });
}

}  // namespace kbus::cli
