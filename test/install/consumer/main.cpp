// Sends one typed command through an embedded broker and handles it: the installed headers,
// libraries and their dependencies are complete.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "kbus/cli/options.hpp"
#include "kbus/handler_registry.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/workflows/host.hpp"
#include "kbus/workflows/memory_state_store.hpp"

struct Ping {
  std::string text;
};

template <>
struct kbus::MessageTraits<Ping> {
  static constexpr std::string_view kType = "consumer.Ping";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "consumer.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("text", &Ping::text));
};

struct Pings {
  int count = 0;
};

template <>
struct kbus::JsonTraits<Pings> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("count", &Pings::count));
};

// kbus::workflows is installed too: a workflow declared and hosted (without a broker).
bool WorkflowsLink() {
  kbus::workflows::Workflow<Pings> wf("consumer.pings");
  wf.StartedBy<Ping>([](const Ping& p) { return p.text; },
                     [](const Ping&, Pings& s, kbus::workflows::WorkflowContext&) { ++s.count; });
  kbus::workflows::MemoryStateStore store;
  kbus::workflows::HostConfig config;
  config.group = "consumer";
  kbus::workflows::WorkflowHost host(wf, config, store);
  kbus::HandlerRegistry registry;
  host.Register(registry);
  // Ping on its own topic and on the workflow's input topic (re-keyed copies), and the
  // workflow's timeout message.
  return registry.size() == 3;
}

// kbus::cli is installed too, with its Boost dependency: a worker's options parsed as kbus's
// programs parse them.
bool CliLinks() {
  namespace po = boost::program_options;
  kbus::kafka::WorkerConfig config;
  kbus::cli::WorkerOptions options;
  po::options_description desc("consumer options");
  kbus::cli::AddWorkerOptions(desc, options, config);
  auto parsed = kbus::cli::ParseArgs({"--brokers", "localhost:9092", "--group", "consumer"}, desc);
  return parsed.ok() && kbus::cli::ApplyWorkerOptions(options, *parsed, config).ok() &&
         config.group == "consumer";
}

int main() {
  if (!WorkflowsLink()) return 1;
  if (!CliLinks()) return 1;
  kbus::kafka::EmbeddedBroker broker;
  std::atomic<bool> pinged{false};
  kbus::HandlerRegistry handlers;
  handlers.Handle<Ping>([&](const Ping& p, kbus::Context&) { pinged = p.text == "hello"; });

  kbus::kafka::WorkerConfig config;
  config.client.brokers = broker.bootstrap();
  config.group = "consumer";
  config.session_timeout = std::chrono::seconds(6);
  kbus::kafka::Worker worker(config, handlers);
  std::thread run([&] { worker.Run(); });

  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = broker.bootstrap();
  kbus::kafka::Producer producer(pc);
  if (!producer.Send(Ping{"hello"}).ok()) return 1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!pinged && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  worker.Stop();
  run.join();
  std::puts(pinged ? "handled" : "not handled");
  return pinged ? 0 : 1;
}
