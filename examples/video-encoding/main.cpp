// video-encoding: hosts EncodeVideoWorkflow and ThumbnailWorkflow, two delegated commands in one
// worker, the flagship example (docs/workflows.md).
//
//   video-encoding --brokers HOST:PORT [--encoder ffmpeg|fake] [--output-dir DIR]
//                  [--thumbnail-name video.thumbnail]            host the workflows until SIGTERM
//   video-encoding --brokers embedded --demo                     the README demo, all in one process
//
// The demo starts an embedded broker, a launcher (the same Launcher kbus-launcher runs, with
// the fake encoder in its allow-list), the workflow hosts, and sends three videos, each to be
// encoded and to get a thumbnail: one encodes at once, one fails twice and then encodes, one
// always fails and ends in the dead-letter topic (their thumbnails go the same ways). It prints
// what happens to each, and exits 0 when all six jobs ended as expected.
// Every option can also come from the environment: KBUS_BROKERS, KBUS_GROUP, ... (--help).
//
// SIGTERM or SIGINT: the worker stops taking messages, finishes or hands back what runs, commits
// and exits 0; a second one exits at once (128 + the signal). Brokers that do not answer yet
// are waited for (a log line every few seconds), not an exit; a signal meanwhile exits 0.


#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "kbus/cli/options.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/log.hpp"
#include "services.hpp"

namespace po = boost::program_options;
namespace cli = kbus::cli;
using kbus::Status;
using namespace std::chrono_literals;

namespace {

struct Job {
  std::string source;
  std::string expect;  // "encoded", "thumbnail made" or "dead-lettered"
  std::string result;
};

class Printer {
 public:
  void Say(const std::string& line) {
    std::lock_guard lock(mu_);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  std::mutex& mu() { return mu_; }

 private:
  std::mutex mu_;
};

int RunDemo(const kbus::kafka::WorkerConfig& base, const std::string& fake_encoder, video::ThumbnailSettings thumbnails) {
  using kbus::handlers::LaunchProcess;
  using kbus::handlers::ProcessExited;
  using kbus::handlers::ProcessProgress;
  using kbus::handlers::ProcessStarted;

  video::EncodeSettings settings;
  settings.encoder = "fake";
  settings.fake_seconds = 1.2;
  settings.retry.initial_interval = 500ms;
  settings.retry.maximum_interval = 2s;
  settings.retry.maximum_attempts = 3;
  settings.run_timeout = 30s;
  settings.heartbeat_interval = 500ms;

  auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " + fake_encoder + "\n");
  if (!allow.ok()) {
    std::fprintf(stderr, "video-encoding: %s\n", allow.error().ToString().c_str());
    return cli::kExitFailure;
  }
  kbus::kafka::WorkerConfig launcher_config = base;
  launcher_config.group = base.group + "-launcher";
  kbus::handlers::LauncherConfig lc;
  lc.max_processes = 4;
  lc.default_heartbeat = 500ms;
  lc.kill_grace = 2s;
  lc.host = "demo";
  // The workflows' inputs: each launch's events come back to the input of the workflow that asked.
  lc.reply_topics = {settings.name + ".in", thumbnails.name + ".in"};
  video::LauncherService launcher(launcher_config, std::move(*allow), lc);
  video::EncodeService encoder(base, settings, thumbnails);
  const std::string thumbnail_input = encoder.thumbnail_host()->input_topic();

  // What the demo shows comes from a third group that reads the same topics.
  Printer out;
  // By job id: a thumbnail's is "VIDEO_ID.thumbnail" (video::ThumbnailId).
  std::map<std::string, Job> jobs{{"clip-1", {"holiday.mp4", "encoded", ""}},
                                  {"clip-2", {"flaky-2-interview.mp4", "encoded", ""}},
                                  {"clip-3", {"broken-upload.mp4", "dead-lettered", ""}},
                                  {"clip-1.thumbnail", {"holiday.mp4", "thumbnail made", ""}},
                                  {"clip-2.thumbnail", {"flaky-2-interview.mp4", "thumbnail made", ""}},
                                  {"clip-3.thumbnail", {"broken-upload.mp4", "dead-lettered", ""}}};
  std::atomic<int> ended{0};
  const std::string dlq = kbus::DeadLetterTopic(base.group);
  kbus::HandlerRegistry watch;
  watch.Handle<LaunchProcess>([&](const LaunchProcess& l, kbus::Context&) {
    out.Say("  workflow -> kbus.LaunchProcess " + l.job_id + " attempt " + std::to_string(l.attempt));
  });
  // The launcher's events, on each workflow's input: one type, a route per topic.
  for (const std::string& input : {encoder.input_topic(), thumbnail_input}) {
    kbus::HandlerOptions on_input;
    on_input.topic = input;
    watch.Handle<ProcessStarted>([&](const ProcessStarted& e, kbus::Context&) {
      out.Say("  launcher <- started " + e.job_id + " attempt " + std::to_string(e.attempt) + " (pid " +
              std::to_string(e.pid) + ")");
    }, on_input);
    watch.Handle<ProcessProgress>([&](const ProcessProgress& e, kbus::Context&) {
      out.Say("  launcher .. " + e.job_id + " " + std::to_string(e.percent) + "% " + e.message);
    }, on_input);
    watch.Handle<kbus::handlers::ProcessHeartbeat>([](const auto&, kbus::Context&) {}, on_input);
    watch.Handle<ProcessExited>([&](const ProcessExited& e, kbus::Context&) {
      std::string line = "  launcher <- exited " + e.job_id + " attempt " + std::to_string(e.attempt) + ": " + e.outcome;
      if (e.outcome == "failed") line += " (exit " + std::to_string(e.exit_code) + ")";
      out.Say(line);
    }, on_input);
  }
  // The workflows' own timeout messages share their input topics: not the watcher's business.
  for (auto* host : {&encoder.host(), encoder.thumbnail_host()}) {
    watch.AddRoute({host->timeout_type(), kbus::MessageKind::kCommand, host->input_topic(),
                    [](const kbus::JsonValue&, kbus::Context&) { return kbus::Ack(); }, {}});
  }
  auto ended_as = [&](const std::string& job, std::string result) {
    {
      std::lock_guard lock(out.mu());
      jobs[job].result = std::move(result);
    }
    ++ended;
  };
  auto attempts = [](int n) { return std::to_string(n) + " attempt" + (n > 1 ? "s" : ""); };
  watch.Handle<video::VideoEncoded>([&](const video::VideoEncoded& e, kbus::Context&) {
    out.Say("  workflow -> video.VideoEncoded " + e.video_id);
    ended_as(e.video_id, "encoded after " + attempts(e.attempts));
  });
  watch.Handle<video::VideoEncodingFailed>([&](const video::VideoEncodingFailed& e, kbus::Context&) {
    out.Say("  workflow -> video.VideoEncodingFailed " + e.video_id + " after " + std::to_string(e.attempts) +
            " attempts (" + e.outcome + ")");
  });
  watch.Handle<video::ThumbnailMade>([&](const video::ThumbnailMade& e, kbus::Context&) {
    out.Say("  workflow -> video.ThumbnailMade " + e.video_id);
    ended_as(e.video_id + ".thumbnail", "thumbnail made after " + attempts(e.attempts));
  });
  watch.Handle<video::ThumbnailFailed>([&](const video::ThumbnailFailed& e, kbus::Context&) {
    out.Say("  workflow -> video.ThumbnailFailed " + e.video_id + " after " + std::to_string(e.attempts) +
            " attempts (" + e.outcome + ")");
  });
  kbus::HandlerOptions on_dlq;
  on_dlq.topic = dlq;
  auto dead_lettered = [&](const std::string& job, std::string_view type, kbus::Context& ctx) {
    const std::string reason(ctx.record().FindHeader(kbus::header::kDlqReason).value_or("?"));
    const std::string outcome(ctx.record().FindHeader("kbus-dlq-outcome").value_or("?"));
    out.Say("  workflow -> " + dlq + " <- " + std::string(type) + " " + job + " (" + reason + ")");
    ended_as(job, "dead-lettered to " + dlq + " (" + reason + ", last outcome " + outcome + ")");
  };
  // On the dead-letter topic only: the copies re-keyed into a workflow's input come here too (a
  // type's only route takes it from any topic).
  watch.Handle<video::EncodeVideo>([&](const video::EncodeVideo& v, kbus::Context& ctx) {
    if (ctx.record().topic == dlq) dead_lettered(v.video_id, "video.EncodeVideo", ctx);
  }, on_dlq);
  watch.Handle<video::MakeThumbnail>([&](const video::MakeThumbnail& t, kbus::Context& ctx) {
    if (ctx.record().topic == dlq) dead_lettered(video::ThumbnailId(t), "video.MakeThumbnail", ctx);
  }, on_dlq);
  kbus::kafka::WorkerConfig watch_config = base;
  watch_config.group = base.group + "-demo-watch";
  kbus::kafka::Worker watcher(watch_config, watch);

  std::thread launcher_thread([&] { launcher.Run(); });
  std::thread encoder_thread([&] { encoder.Run(); });
  std::thread watch_thread([&] { watcher.Run(); });

  kbus::kafka::Producer producer(video::EventProducerConfig(base.client));
  for (const auto& [id, job] : jobs) {
    if (id.ends_with(".thumbnail")) continue;
    Status s = producer.Send(video::EncodeVideo{id, job.source, 720});
    if (s.ok()) s = producer.Send(video::MakeThumbnail{id, job.source, 180, 1});
    if (!s.ok()) {
      std::fprintf(stderr, "send failed: %s\n", s.error().ToString().c_str());
      return cli::kExitFailure;
    }
    out.Say("  client   -> video.EncodeVideo, video.MakeThumbnail " + id + " (" + job.source + ")");
  }

  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (ended.load() < static_cast<int>(jobs.size()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  watcher.Stop();
  encoder.Stop();
  launcher.Stop();
  watch_thread.join();
  encoder_thread.join();
  launcher_thread.join();

  bool ok = true;
  std::printf("\nWhat happened (docs/workflows.md shows how to watch the jobs live with kbus watch):\n");
  for (const auto& [id, job] : jobs) {
    const bool as_expected = job.result.starts_with(job.expect);
    ok = ok && as_expected;
    std::printf("  %-16s %-22s %s\n", id.c_str(), job.source.c_str(),
                job.result.empty() ? "did not finish in 120 s" : job.result.c_str());
  }
  auto stats = encoder.host().Stats();
  const auto more = encoder.thumbnail_host()->Stats();
  stats.started += more.started;
  stats.completed += more.completed;
  stats.failed += more.failed;
  stats.timeouts_fired += more.timeouts_fired;
  stats.state_writes += more.state_writes;
  std::printf("demo %s: %llu workflows started, %llu completed, %llu failed, %llu timeouts fired, %llu state writes\n",
              ok ? "finished" : "FAILED", static_cast<unsigned long long>(stats.started),
              static_cast<unsigned long long>(stats.completed), static_cast<unsigned long long>(stats.failed),
              static_cast<unsigned long long>(stats.timeouts_fired),
              static_cast<unsigned long long>(stats.state_writes));
  return ok ? cli::kExitOk : cli::kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  cli::SetProgramName("video-encoding");
  kbus::kafka::WorkerConfig config;
  config.group = "video-encoding";
  cli::WorkerOptions options;
  bool demo = false;
  std::string encoder = "ffmpeg";
  std::string fake_encoder = FAKE_ENCODER_PATH;
  video::EncodeSettings settings;
  video::ThumbnailSettings thumbnails;  // the demo's; a host has one with --thumbnail-name
  std::string thumbnail_name;
  std::int64_t retry_initial_ms = settings.retry.initial_interval.count();
  std::int64_t retry_max_ms = settings.retry.maximum_interval.count();
  std::int64_t heartbeat_ms = settings.heartbeat_interval.count();
  std::int64_t heartbeat_timeout_ms = 0;
  std::int64_t run_timeout_ms = settings.run_timeout.count();
  int partitions = 4;
  po::options_description desc("Options (each also from KBUS_<NAME>, e.g. KBUS_BROKERS)", cli::kHelpWidth);
  cli::AddWorkerOptions(desc, options, config);
  desc.add_options()("encoder", po::value(&encoder)->default_value(encoder)->value_name("ffmpeg|fake"),
                     "what the launcher is asked to run: the allow-list's ffmpeg, or the fake encoder")(
      "demo", po::bool_switch(&demo), "run the README demo: three videos, followed to their end")(
      "fake-encoder", po::value(&fake_encoder)->default_value(fake_encoder)->value_name("PATH"),
      "the fake encoder the demo's launcher may run")(
      "name", po::value(&settings.name)->default_value(settings.name)->value_name("NAME"),
      "the encoding workflow's name: its topics are NAME.in and NAME.state")(
      "thumbnail-name", po::value(&thumbnail_name)->value_name("NAME"),
      "also host the MakeThumbnail workflow, in the same worker, named NAME (e.g. video.thumbnail): its "
      "topics are NAME.in and NAME.state. Default: the EncodeVideo workflow only (the demo hosts both)")(
      "command-topic", po::value(&settings.command_topic)->value_name("TOPIC"),
      "where EncodeVideo and MakeThumbnail arrive (default video.commands)")(
      "launcher-topic", po::value(&settings.launcher_topic)->default_value(settings.launcher_topic)->value_name("TOPIC"),
      "where LaunchProcess goes")(
      "control-topic", po::value(&settings.control_topic)->default_value(settings.control_topic)->value_name("TOPIC"),
      "where CancelProcess goes")(
      "events-topic", po::value(&settings.events_topic)->value_name("TOPIC"),
      "where VideoEncoded, VideoEncodingFailed, ThumbnailMade and ThumbnailFailed go (default video.events)")(
      "max-attempts", po::value(&settings.retry.maximum_attempts)->default_value(settings.retry.maximum_attempts)->value_name("N"),
      "attempts per encoding or thumbnail, the first included (0: unlimited)")(
      "retry-initial-ms", po::value(&retry_initial_ms)->default_value(retry_initial_ms)->value_name("MS"),
      "the wait before the second attempt; doubled for each later one")(
      "retry-max-ms", po::value(&retry_max_ms)->default_value(retry_max_ms)->value_name("MS"),
      "the longest wait between attempts")(
      "run-timeout-ms", po::value(&run_timeout_ms)->default_value(run_timeout_ms)->value_name("MS"),
      "the launcher stops an attempt that runs longer")(
      "heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms)->value_name("MS"),
      "how often the launcher reports that an attempt runs")(
      "heartbeat-timeout-ms", po::value(&heartbeat_timeout_ms)->default_value(heartbeat_timeout_ms)->value_name("MS"),
      "silence after which an attempt counts as lost: 0 for 3 heartbeats, else at least 2")(
      "partitions", po::value(&partitions)->default_value(partitions)->value_name("N"),
      "on a real broker, the partitions of each workflow's NAME.in and NAME.state when they do not exist yet "
      "(the state topic is made compacted)")(
      "fake-seconds", po::value(&settings.fake_seconds)->default_value(settings.fake_seconds)->value_name("S"),
      "how long a fake encoding runs (--encoder fake)")(
      "output-dir", po::value(&settings.output_dir)->value_name("DIR"),
      "with --encoder ffmpeg: the directory, as the launcher sees it, where VIDEO_ID.HEIGHTp.mp4 (and the "
      "thumbnail VIDEO_ID.HEIGHTp.jpg) is written "
      "(default: beside the source, SOURCE.HEIGHTp.mp4); a video_id that is no plain file name is then "
      "dead-lettered as rejected")("help,h", "show this help");

  auto parsed = cli::ParseArgs({argv + 1, argv + argc}, desc);
  if (!parsed.ok()) return cli::Report("", parsed.error());
  if (parsed->help()) {
    cli::PrintHelp(std::cout, "video-encoding [options]",
                   "Hosts the EncodeVideo and MakeThumbnail workflows in one worker until SIGTERM: each\n"
                   "command becomes launcher attempts, retried with backoff, then VideoEncoded or\n"
                   "ThumbnailMade, or the dead-letter topic.",
                   desc);
    return cli::kExitOk;
  }
  if (Status s = cli::ApplyWorkerOptions(options, *parsed, config); !s.ok()) return cli::Report("", s.error());
  if (encoder != "ffmpeg" && encoder != "fake") {
    return cli::ReportUsage("", parsed->Spelling("encoder") + " must be ffmpeg or fake, not '" + encoder + "'");
  }
  for (const auto& [flag, value] : {std::pair<const char*, std::int64_t>{"retry-initial-ms", retry_initial_ms},
                                    {"retry-max-ms", retry_max_ms}}) {
    if (value < 0) return cli::ReportUsage("", parsed->Spelling(flag) + " must not be negative");
  }
  for (const auto& [flag, value] : {std::pair<const char*, std::int64_t>{"run-timeout-ms", run_timeout_ms},
                                    {"heartbeat-ms", heartbeat_ms}}) {
    if (value <= 0) return cli::ReportUsage("", parsed->Spelling(flag) + " must be positive");
  }
  if (run_timeout_ms > kbus::handlers::kMaxRunTimeout.count()) {
    return cli::ReportUsage("", parsed->Spelling("run-timeout-ms") + " must be at most " +
                                    std::to_string(kbus::handlers::kMaxRunTimeout.count()) + " (30 days)");
  }
  if (heartbeat_ms < kbus::handlers::kMinHeartbeatInterval.count() ||
      heartbeat_ms > kbus::handlers::kMaxHeartbeatInterval.count()) {
    return cli::ReportUsage("", parsed->Spelling("heartbeat-ms") + " must be from " +
                                    std::to_string(kbus::handlers::kMinHeartbeatInterval.count()) + " to " +
                                    std::to_string(kbus::handlers::kMaxHeartbeatInterval.count()));
  }
  if (heartbeat_timeout_ms > kbus::handlers::kMaxRunTimeout.count()) {
    return cli::ReportUsage("", parsed->Spelling("heartbeat-timeout-ms") + " must be at most " +
                                    std::to_string(kbus::handlers::kMaxRunTimeout.count()));
  }
  if (retry_max_ms < retry_initial_ms) {
    return cli::ReportUsage("", parsed->Spelling("retry-max-ms") + " (" + std::to_string(retry_max_ms) +
                                    ") must be at least " + parsed->Spelling("retry-initial-ms") + " (" +
                                    std::to_string(retry_initial_ms) + ")");
  }
  if (settings.retry.maximum_attempts < 0) {
    return cli::ReportUsage("", parsed->Spelling("max-attempts") + " must be 0 (unlimited) or more");
  }
  if (heartbeat_timeout_ms < 0) return cli::ReportUsage("", parsed->Spelling("heartbeat-timeout-ms") + " must not be negative");
  // The workflow moves its silence deadline once half of the window is used: a window shorter
  // than two heartbeats can close between two of them and lose an attempt that runs fine.
  if (heartbeat_timeout_ms > 0 && heartbeat_timeout_ms < 2 * heartbeat_ms) {
    return cli::ReportUsage("", parsed->Spelling("heartbeat-timeout-ms") + " (" + std::to_string(heartbeat_timeout_ms) +
                                    ") must be 0 or at least twice " + parsed->Spelling("heartbeat-ms") + " (" +
                                    std::to_string(heartbeat_ms) + ")");
  }
  for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{"name", &settings.name},
                                    {"launcher-topic", &settings.launcher_topic},
                                    {"control-topic", &settings.control_topic}}) {
    if (value->empty()) return cli::ReportUsage("", parsed->Spelling(flag) + " must not be empty");
  }
  if (parsed->vm.count("thumbnail-name") != 0 && thumbnail_name.empty()) {
    return cli::ReportUsage("", parsed->Spelling("thumbnail-name") + " must not be empty");
  }
  if (!thumbnail_name.empty()) thumbnails.name = thumbnail_name;
  if (thumbnail_name == settings.name) {
    return cli::ReportUsage("", parsed->Spelling("thumbnail-name") + " must differ from " + parsed->Spelling("name") +
                                    " ('" + settings.name + "'): each workflow has its own topics");
  }
  if (settings.fake_seconds < 0) return cli::ReportUsage("", parsed->Spelling("fake-seconds") + " must not be negative");
  // The launcher, maybe in another container, resolves it: relative to its own working directory
  // would be a surprise.
  if (!settings.output_dir.empty() && settings.output_dir.front() != '/') {
    return cli::ReportUsage("", parsed->Spelling("output-dir") + " must be an absolute path, not '" +
                                    settings.output_dir + "'");
  }
  if (partitions < 1) return cli::ReportUsage("", parsed->Spelling("partitions") + " must be at least 1");
  settings.encoder = encoder;
  settings.retry.initial_interval = std::chrono::milliseconds(retry_initial_ms);
  settings.retry.maximum_interval = std::chrono::milliseconds(retry_max_ms);
  settings.run_timeout = std::chrono::milliseconds(run_timeout_ms);
  settings.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
  settings.heartbeat_timeout = std::chrono::milliseconds(heartbeat_timeout_ms);
  try {
    kbus::workflows::Validate(settings.retry);
  } catch (const std::invalid_argument& e) {
    return cli::ReportUsage("", std::string("bad retry flags: ") + e.what());
  }

  try {
    auto embedded = kbus::kafka::StartEmbeddedIfRequested(config.client.brokers);
    if (demo) return RunDemo(config, fake_encoder, thumbnails);
    cli::InstallTwoStepStopSignals();
    const auto stopped = [] { return cli::StopRequested(); };
    if (!embedded) {
      // On a real broker: each workflow's topics, co-partitioned, the state topic compacted. The
      // embedded broker has no admin API; it makes them with 4 partitions when first used.
      for (;;) {
        if (!kbus::workflows::WaitForBrokers(config.client, stopped)) return cli::kExitOk;
        Status s = kbus::Ok();
        for (const std::string& name : {settings.name, thumbnail_name}) {
          if (name.empty()) continue;
          kbus::workflows::WorkflowOptions topics;
          topics.input_topic = name + ".in";
          topics.state_topic = name + ".state";
          if (s.ok()) s = kbus::workflows::CreateWorkflowTopics(config.client, topics, partitions);
        }
        if (s.ok()) break;
        if (!s.error().retriable()) return cli::Report("", s.error());
        kbus::Log(kbus::LogLevel::kWarn, "workflow topics not created yet, trying again",
                  {{"error", s.error().message()}});
        for (int i = 0; i < 20 && !stopped(); ++i) std::this_thread::sleep_for(100ms);
      }
    }
    if (stopped()) return cli::kExitOk;
    video::EncodeService service(config, settings,
                                 thumbnail_name.empty() ? std::nullopt : std::optional(thumbnails));
    cli::StopWorkerOnSignal(&service.worker());
    service.Run();
    cli::StopWorkerOnSignal(nullptr);
  } catch (const std::exception& e) {
    std::cerr << "video-encoding: " << e.what() << "\n";
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}
