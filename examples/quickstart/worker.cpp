// quickstart-worker: handles the shop's commands in a consumer group.
//
//   quickstart-worker --brokers HOST:PORT --group shop       run a worker until SIGTERM/SIGINT
//   quickstart-worker --brokers embedded --demo 5            the README demo: an embedded broker,
//       5 orders (and one invalid one) sent, the worker and an audit group that prints each
//       OrderCompleted event, a scheduler that delivers each order's AskForReview 2 s after
//       its charge, and the nightly report's schedule triggered once
//
// The worker declares the nightly report's schedule (schedules.hpp) when it starts; a
// kbus-scheduler (compose runs one) fires it and delivers the delayed AskForReview commands.
//
// Every option can also come from the environment: KBUS_BROKERS, KBUS_GROUP, ... (--help).
// With --http-port (KBUS_HTTP_PORT) it serves /healthz, /readyz and /metrics
// (docs/operations.md); a bad value exits 2 naming the option, a port in use exits 1 naming it.
//
// Shutdown: the first SIGTERM or SIGINT stops taking work (/readyz answers 503 from then on),
// lets running handlers finish within the worker's shutdown grace (10 s) or hands
// their records back to the group, commits what finished, leaves the group and exits 0. A
// second signal exits at once with 128 + the signal's number, as an impatient operator (or a
// supervisor's kill after its own grace) asks: nothing more is committed, and the records in
// flight are delivered again to the next owner (at-least-once, docs/delivery.md).

#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "handlers.hpp"
#include "schedules.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"
#include "kbus/schedules/client.hpp"
#include "kbus/schedules/scheduler.hpp"

namespace po = boost::program_options;
using kbus::Status;

namespace {

void Say(std::mutex& mu, const std::string& line) {
  std::lock_guard lock(mu);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// The demo's audit service: another group, which subscribes to the shop's events.
int RunDemo(const kbus::kafka::WorkerConfig& base, int orders) {
  std::mutex mu;
  std::set<std::string> completed;
  kbus::HandlerRegistry audit_handlers;
  audit_handlers.Handle<shop::OrderCompleted>([&](const shop::OrderCompleted& e, kbus::Context& ctx) {
    std::lock_guard lock(mu);
    std::printf("  audit   <- shop.OrderCompleted %s charged %lld.%02lld (correlation %.8s)\n",
                e.order_id.c_str(), static_cast<long long>(e.charged_cents / 100),
                static_cast<long long>(e.charged_cents % 100), ctx.envelope().correlation_id.data());
    std::fflush(stdout);
    completed.insert(e.order_id);
  });

  // The shop's own handlers, each wrapped to print the step it takes.
  kbus::HandlerRegistry shop_handlers;
  shop_handlers.Handle<shop::PlaceOrder>([&](const shop::PlaceOrder& o, kbus::Context& ctx) {
    kbus::Outcome outcome = shop::PlaceOrderHandler(o, ctx);
    Say(mu, "  worker  <- shop.PlaceOrder " + o.order_id +
                (outcome.kind() == kbus::Outcome::Kind::kAck
                     ? std::string(", sends shop.ChargeCard")
                     : ", refused (" + outcome.error() + "): to the dead-letter topic " +
                           kbus::DeadLetterTopic(base.group)));
    return outcome;
  });
  std::set<std::string> reviewed;
  int reports = 0;
  shop_handlers.Handle<shop::ChargeCard>([&](const shop::ChargeCard& c, kbus::Context& ctx) {
    Say(mu, "  worker  <- shop.ChargeCard " + c.order_id +
                ", publishes shop.OrderCompleted, sends shop.AskForReview in " +
                std::to_string(shop::review_delay.count() / 1000) + " s");
    return shop::ChargeCardHandler(c, ctx);
  });
  shop_handlers.Handle<shop::AskForReview>([&](const shop::AskForReview& a, kbus::Context& ctx) {
    const auto waited = ctx.envelope().sent_at_ms >= 0
                            ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count() - ctx.envelope().sent_at_ms
                            : -1;
    Say(mu, "  worker  <- shop.AskForReview " + a.order_id + " (sent " + std::to_string(waited) + " ms ago)");
    std::lock_guard lock(mu);
    reviewed.insert(a.order_id);
  });
  shop_handlers.Handle<shop::SendDailyReport>([&](const shop::SendDailyReport& r, kbus::Context&) {
    Say(mu, "  worker  <- shop.SendDailyReport for " + r.day);
    std::lock_guard lock(mu);
    ++reports;
  });

  kbus::kafka::WorkerConfig shop_config = base;
  kbus::kafka::WorkerConfig audit_config = base;
  audit_config.group = base.group + "-audit";
  kbus::kafka::Worker shop_worker(shop_config, shop_handlers);
  kbus::kafka::Worker audit_worker(audit_config, audit_handlers);
  kbus::schedules::SchedulerConfig scheduler_config;
  scheduler_config.client = base.client;
  scheduler_config.run_topics = {};
  kbus::schedules::Scheduler scheduler(scheduler_config);
  std::thread shop_thread([&] { shop_worker.Run(); });
  std::thread audit_thread([&] { audit_worker.Run(); });
  std::thread scheduler_thread([&] { scheduler.Run(); });

  kbus::kafka::ProducerConfig pc;
  pc.client = base.client;
  kbus::kafka::Producer producer(pc);
  const auto nightly = shop::NightlyReport();
  if (auto s = kbus::schedules::Declare(producer, {nightly}); !s.ok()) {
    std::fprintf(stderr, "declaring the schedule failed: %s\n", s.error().ToString().c_str());
    return 1;
  }
  const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  const auto next = kbus::schedules::NextFireTimes(nightly, now, 1);
  const auto hours = next.empty() ? 0 : std::chrono::duration_cast<std::chrono::minutes>(next[0] - now).count() / 60.0;
  char when[64];
  std::snprintf(when, sizeof when, ", next in %.1f h", hours);
  Say(mu, "  client  -> schedule " + nightly.id + ": cron '" + nightly.cron + "' in " + nightly.time_zone +
              (next.empty() ? "" : when) + "; triggered once now");
  kbus::schedules::Request trigger;
  trigger.op = kbus::schedules::Request::Op::kTrigger;
  trigger.to = now;
  if (auto sent = kbus::schedules::SendRequest(producer, nightly.id, trigger); !sent.ok()) {
    std::fprintf(stderr, "triggering the schedule failed: %s\n", sent.error().ToString().c_str());
    return 1;
  }
  for (int i = 1; i <= orders; ++i) {
    shop::PlaceOrder order{"order-" + std::to_string(i), "coffee beans", i};
    if (auto s = producer.Send(order); !s.ok()) {
      std::fprintf(stderr, "send failed: %s\n", s.error().ToString().c_str());
      return 1;
    }
    Say(mu, "  client  -> shop.PlaceOrder " + order.order_id + " (" + std::to_string(i) +
                " x coffee beans)");
  }
  // One order no handler can accept: it goes to the dead-letter topic, the rest go on.
  if (auto s = producer.Send(shop::PlaceOrder{"order-0", "nothing", 0}); !s.ok()) {
    std::fprintf(stderr, "send failed: %s\n", s.error().ToString().c_str());
    return 1;
  }
  Say(mu, "  client  -> shop.PlaceOrder order-0 (0 x nothing)");

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool done = false;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(mu);
    done = completed.size() == static_cast<std::size_t>(orders) &&
           reviewed.size() == static_cast<std::size_t>(orders) && reports == 1 &&
           shop_worker.Stats().dead_lettered == 1;
  }
  shop_worker.Stop();
  audit_worker.Stop();
  scheduler.Stop();
  shop_thread.join();
  audit_thread.join();
  scheduler_thread.join();
  const auto stats = shop_worker.Stats();
  std::printf(
      "demo %s: %zu of %d orders completed, %llu dead-lettered, %zu asked for a review later, "
      "%d nightly report; the shop worker handled %llu commands\n",
      done ? "finished" : "FAILED", completed.size(), orders,
      static_cast<unsigned long long>(stats.dead_lettered), reviewed.size(), reports,
      static_cast<unsigned long long>(stats.handled));
  return done ? 0 : 1;
}

// Declares the shop's schedules (schedules.hpp), trying again until the brokers take them or
// the worker is asked to stop.
void DeclareSchedules(const kbus::kafka::ClientConfig& client) {
  kbus::kafka::ProducerConfig pc;
  pc.client = client;
  pc.client.properties["message.timeout.ms"] = "5000";
  kbus::kafka::Producer producer(pc);
  while (!kbus::cli::StopRequested()) {
    Status s = kbus::schedules::Declare(producer, {shop::NightlyReport()});
    if (s.ok()) return;
    kbus::Log(kbus::LogLevel::kWarn, "the nightly report's schedule is not declared yet; trying again",
              {{"error", s.error().message()}});
    for (int i = 0; i < 20 && !kbus::cli::StopRequested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

int main(int argc, char** argv) {
  namespace cli = kbus::cli;
  cli::SetProgramName("quickstart-worker");
  kbus::kafka::WorkerConfig config;
  config.group = "shop";
  cli::WorkerOptions options;
  int demo = 0;
  po::options_description desc("Options (each also from KBUS_<NAME>, e.g. KBUS_BROKERS)",
                               cli::kHelpWidth);
  cli::AddWorkerOptions(desc, options, config);
  desc.add_options()("demo", po::value(&demo)->default_value(0)->value_name("N"),
                     "send N orders (and one invalid one), follow them to the end, and exit")(
      "help,h", "show this help");

  auto parsed = cli::ParseArgs({argv + 1, argv + argc}, desc);
  if (!parsed.ok()) return cli::Report("", parsed.error());
  if (parsed->help()) {
    cli::PrintHelp(std::cout, "quickstart-worker [options]",
                   "Handles the quickstart shop's commands in a consumer group until SIGTERM.\n"
                   "With --brokers embedded it starts a broker inside this process.",
                   desc);
    return cli::kExitOk;
  }
  if (Status s = cli::ApplyWorkerOptions(options, *parsed, config); !s.ok()) {
    return cli::Report("", s.error());
  }
  if (demo < 0) return cli::ReportUsage("", "--demo must not be negative");

  try {
    auto embedded = kbus::kafka::StartEmbeddedIfRequested(config.client.brokers);
    if (embedded) {
      // The scheduler's topics exist before it subscribes to them.
      for (std::string_view t : {kbus::kDefaultPendingTopic, kbus::schedules::kDefaultSchedulesTopic}) {
        if (Status s = embedded->CreateTopic(t, 4); !s.ok()) throw std::runtime_error(s.error().message());
      }
    }
    if (demo > 0) {
      shop::review_delay = std::chrono::seconds(2);
      return RunDemo(config, demo);
    }

    kbus::HandlerRegistry handlers;
    shop::RegisterHandlers(handlers);
    // Installed before the worker exists, so that a signal during start-up is not lost: the
    // worker then stops as soon as it runs.
    cli::InstallTwoStepStopSignals();
    kbus::kafka::Worker worker(config, handlers);
    cli::StopWorkerOnSignal(&worker);
    // Beside the worker, not before it: brokers that are not up yet must hold up neither its
    // start nor its start-up errors (a port in use).
    std::thread declare([&config] { DeclareSchedules(config.client); });
    worker.Run();
    cli::StopWorkerOnSignal(nullptr);
    declare.join();
  } catch (const std::exception& e) {
    std::cerr << "quickstart-worker: " << e.what() << "\n";
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}
