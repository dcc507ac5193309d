// kbus broker: an embedded Kafka-protocol broker (librdkafka's mock cluster) on a fixed loopback
// port, for demos and local development. Workers in other processes on this machine share it.

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iostream>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/log.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCommand = "broker";
constexpr std::string_view kUsage = "kbus broker [--port 9092] [--topic NAME:PARTITIONS]...";
constexpr std::string_view kSummary =
    "Runs an embedded Kafka-protocol broker until SIGINT or SIGTERM and prints\n"
    "`bootstrap <address>` once it accepts clients. It keeps data in memory only\n"
    "(about 5 MiB per partition) and has no admin API: create topics with --topic.";

constexpr int kDefaultPartitions = 4;  // what the broker gives auto-created topics

struct BrokerArgs {
  int port = 9092;
  int brokers = 1;
  std::vector<std::string> topics;
  std::string log_level;
};

po::options_description Describe(BrokerArgs& args) {
  po::options_description desc("kbus broker options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help")(
      "port", po::value(&args.port)->default_value(args.port),
      "loopback port clients bootstrap from; 0 for the cluster's own ephemeral ports")(
      "brokers-count", po::value(&args.brokers)->default_value(args.brokers),
      "brokers in the cluster")(
      "topic", po::value(&args.topics)->value_name("NAME[:PARTITIONS]"),
      "create a topic at start (default 4 partitions); repeatable (KBUS_TOPIC: one per line)");
  AddLogLevelOption(desc, args.log_level);
  return desc;
}

// Whether 127.0.0.1:port can be listened on, as the relay will. Checked first because an
// EmbeddedBroker whose relay cannot listen aborts the process (the library destroys its handle
// before the mock cluster when the constructor throws) instead of throwing. Racy, but it turns the
// common case, a port already taken, into an error message.
Status CheckPortFree(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(ErrorCode::kInternal, std::string("socket: ") + std::strerror(errno));
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool free =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(fd, 1) == 0;
  const int err = errno;
  ::close(fd);
  if (free) return Ok();
  return Error(ErrorCode::kTransport, "cannot listen on 127.0.0.1:" + std::to_string(port) + ": " +
                                          std::strerror(err) +
                                          " (another broker there? pick another --port)");
}

}  // namespace

void PrintBrokerHelp(std::ostream& os) {
  BrokerArgs args;
  PrintHelp(os, kUsage, kSummary, Describe(args));
}

int RunBroker(const std::vector<std::string>& argv) {
  BrokerArgs args;
  const auto desc = Describe(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kCommand, parsed.error());
  if (parsed->help()) {
    PrintBrokerHelp(std::cout);
    return kExitOk;
  }
  if (Status s = ApplyLogLevel(args.log_level, *parsed); !s.ok())
    return Report(kCommand, s.error());
  if (args.port < 0 || args.port > 65535) {
    return ReportUsage(kCommand, parsed->Spelling("port") + " " + std::to_string(args.port) +
                                     " is not a port number (0-65535)");
  }
  if (args.brokers < 1) {
    return ReportUsage(kCommand, parsed->Spelling("brokers-count") + " must be at least 1");
  }
  std::vector<TopicArg> topics;
  for (const auto& spec : args.topics) {
    auto topic = ParseTopicSpec(spec, parsed->Spelling("topic"), kDefaultPartitions);
    if (!topic.ok()) return Report(kCommand, topic.error());
    topics.push_back(std::move(topic.value()));
  }

  if (args.port != 0) {
    if (Status s = CheckPortFree(args.port); !s.ok()) return Report(kCommand, s.error());
  }

  // Block the stop signals before the broker starts its threads, which inherit the mask: then
  // only sigsuspend below receives them, and no signal slips in between a check and the wait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t wait_mask;
  pthread_sigmask(SIG_BLOCK, &stop_signals, &wait_mask);
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGTERM);
  InstallStopSignals();

  try {
    kafka::EmbeddedBroker broker(kafka::EmbeddedBroker::Options{args.brokers, args.port});
    for (const auto& t : topics) {
      if (Status s = broker.CreateTopic(t.name, t.partitions); !s.ok()) {
        return Report(kCommand, s.error());
      }
      Log(LogLevel::kInfo, "topic created", {{"topic", t.name}, {"partitions", t.partitions}});
    }
    std::cout << "bootstrap " << broker.bootstrap() << std::endl;  // endl: the reader waits for it
    while (!StopRequested()) sigsuspend(&wait_mask);
    Log(LogLevel::kInfo, "stopping the embedded broker");
  } catch (const std::exception& e) {
    // The relay's port taken, or the mock cluster refused to start.
    return Report(kCommand, Error(ErrorCode::kTransport, e.what()));
  }
  return kExitOk;
}

}  // namespace kbus::cli
