// The flagship example encoding for real: EncodeVideo -> EncodeVideoWorkflow with the ffmpeg
// encoder and an output directory -> the launcher running the real ffmpeg through the
// allow-list compose mounts (docker/launcher.allow). A good video becomes VideoEncoded and a
// file of the height asked (ffprobe), its progress comes back as rising percents ending at 100
// and `kbus watch` shows them; a corrupt one fails, is retried, and ends in the dead-letter topic
// with ffmpeg's message in kbus-dlq-error; a video_id that is no file name, or an odd height, is
// rejected without a launch.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "child_process.hpp"
#include "encode_workflow.hpp"
#include "it_support.hpp"
#include "media.hpp"
#include "services.hpp"
#include "video_topics.hpp"
#include "kbus/dead_letter.hpp"

namespace {

using kbus::test::MediaDir;
using kbus::test::TestBroker;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

kbus::handlers::AllowList ComposeAllowList() {
  std::ifstream in(LAUNCHER_ALLOW_PATH);
  std::stringstream text;
  text << in.rdbuf();
  auto allow = kbus::handlers::AllowList::Parse(text.str());
  if (!allow.ok()) throw std::runtime_error(allow.error().ToString());
  return std::move(*allow);
}

// The launcher (with the compose allow-list) and the workflow host (encoder ffmpeg, writing into
// `output_dir`), each in its own group, on topics of this test; and a third group that records
// what happens.
class Stack {
 public:
  explicit Stack(const std::string& output_dir) {
    video::EncodeSettings s;
    const std::string tag = video_test::MakeTopics(s, "vff");
    s.encoder = "ffmpeg";
    s.output_dir = output_dir;
    s.retry.initial_interval = 200ms;
    s.retry.maximum_interval = 1s;
    s.retry.maximum_attempts = 2;
    s.run_timeout = 60s;
    s.heartbeat_interval = 500ms;
    s.heartbeat_timeout = 10s;
    input_topic = s.name + ".in";
    command_topic = s.command_topic;
    const std::string group = video_test::WorkflowGroup(tag);
    dlq = kbus::DeadLetterTopic(group);

    kbus::handlers::LauncherConfig lc;
    lc.max_processes = 4;
    lc.kill_grace = 1s;
    lc.default_heartbeat = 1s;
    lc.host = "test";
    lc.reply_topics = {input_topic};
    Observe(s);
    launcher_ = std::make_unique<video::LauncherService>(it::WorkerConfigFor(tag + "-launcher"), ComposeAllowList(),
                                                         lc, s.launcher_topic, s.control_topic);
    encoder_ = std::make_unique<video::EncodeService>(it::WorkerConfigFor(group), s);
    launcher_thread_ = std::thread([this] { launcher_->Run(); });
    encoder_thread_ = std::thread([this] { encoder_->Run(); });
  }
  ~Stack() {
    encoder_->Stop();
    launcher_->Stop();
    encoder_thread_.join();
    launcher_thread_.join();
  }

  void Send(const video::EncodeVideo& v) { ASSERT_TRUE(producer_.Send(v, {.topic = command_topic}).ok()); }
  // The result the workflow host holds for `id` ("" for none).
  std::string ResultJson(const std::string& id) {
    auto in = encoder_->host().Instance(id);
    return in ? in->result_json : std::string();
  }

  // How a video ended: "encoded" or "dlq", with what came with it.
  struct Ending {
    std::string how;
    int attempts = -1;
    std::string output;                           // encoded
    std::string reason, outcome, error;           // dlq
  };
  struct Exit {
    int attempt = 0;
    std::string outcome, stderr_tail;
  };

  // Waits until `id` ended (or `timeout`).
  std::optional<Ending> WaitEnding(const std::string& id, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return endings_.contains(id); });
    if (!endings_.contains(id)) return std::nullopt;
    return endings_[id];
  }
  // The topics are read independently: what came on one may still be on its way on another.
  // These wait up to 30 s for what they are asked for, and return what there is.
  std::vector<int> PercentsUpTo100(const std::string& job) {
    return Wait([&] { return !percents_[job].empty() && percents_[job].back() == 100; }, [&] { return percents_[job]; });
  }
  std::vector<Exit> Exits(const std::string& job, std::size_t n) {
    return Wait([&] { return exits_[job].size() >= n; }, [&] { return exits_[job]; });
  }
  std::string Failed(const std::string& id) {
    return Wait([&] { return failed_.contains(id); }, [&] { return failed_[id]; });
  }
  std::vector<int> Percents(const std::string& job) {
    std::lock_guard lock(mu_);
    return percents_[job];
  }
  int Starts(const std::string& job) {
    std::lock_guard lock(mu_);
    return starts_[job];
  }

  std::string input_topic, command_topic, dlq;

 private:
  void Observe(const video::EncodeSettings& s) {
    using kbus::handlers::ProcessExited;
    using kbus::handlers::ProcessProgress;
    using kbus::handlers::ProcessStarted;
    kbus::HandlerOptions on_input, on_events, on_dlq;
    on_input.topic = input_topic;
    on_events.topic = s.events_topic;
    on_dlq.topic = dlq;
    handlers_.Handle<ProcessStarted>([this](const ProcessStarted& e, kbus::Context&) {
      std::lock_guard lock(mu_);
      ++starts_[e.job_id];
      cv_.notify_all();
    }, on_input);
    handlers_.Handle<ProcessProgress>([this](const ProcessProgress& e, kbus::Context&) {
      std::lock_guard lock(mu_);
      percents_[e.job_id].push_back(e.percent);
      cv_.notify_all();
    }, on_input);
    handlers_.Handle<kbus::handlers::ProcessHeartbeat>([](const auto&, kbus::Context&) {}, on_input);
    handlers_.Handle<ProcessExited>([this](const ProcessExited& e, kbus::Context&) {
      std::lock_guard lock(mu_);
      exits_[e.job_id].push_back({e.attempt, e.outcome, e.stderr_tail});
      cv_.notify_all();
    }, on_input);
    // The workflow's own timeouts share its input topic.
    handlers_.AddRoute({s.name + ".timeout", kbus::MessageKind::kCommand, input_topic,
                        [](const kbus::JsonValue&, kbus::Context&) { return kbus::Ack(); }, {}});
    handlers_.Handle<video::VideoEncoded>([this](const video::VideoEncoded& e, kbus::Context&) {
      End(e.video_id, {"encoded", e.attempts, e.output, "", "", ""});
    }, on_events);
    handlers_.Handle<video::VideoEncodingFailed>([this](const video::VideoEncodingFailed& e, kbus::Context&) {
      std::lock_guard lock(mu_);
      failed_[e.video_id] = e.outcome + ": " + e.error;
      cv_.notify_all();
    }, on_events);
    handlers_.Handle<video::EncodeVideo>([this](const video::EncodeVideo& v, kbus::Context& ctx) {
      if (ctx.record().topic != dlq) return;  // the copy re-keyed into the input topic
      auto header = [&](std::string_view name) { return std::string(ctx.record().FindHeader(name).value_or("")); };
      End(v.video_id, {"dlq", std::stoi(header(kbus::header::kDlqAttempts)), "", header(kbus::header::kDlqReason),
                       header("kbus-dlq-outcome"), header(kbus::header::kDlqError)});
    }, on_dlq);
    observer_ = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(TestBroker::UniqueName("vff-obs")), handlers_);
  }
  void End(const std::string& id, Ending ending) {
    std::lock_guard lock(mu_);
    endings_.emplace(id, std::move(ending));
    cv_.notify_all();
  }
  template <class Done, class Get>
  std::invoke_result_t<Get> Wait(Done done, Get get) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 30s, done);
    return get();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Ending> endings_;
  std::map<std::string, std::vector<int>> percents_;
  std::map<std::string, std::vector<Exit>> exits_;
  std::map<std::string, int> starts_;
  std::map<std::string, std::string> failed_;
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<it::RunningWorker> observer_;
  kbus::kafka::Producer producer_{it::ProducerConfig()};
  std::unique_ptr<video::LauncherService> launcher_;
  std::unique_ptr<video::EncodeService> encoder_;
  std::thread launcher_thread_, encoder_thread_;
};

TEST(VideoEncodingFfmpeg, AGoodVideoEncodesWithProgressAndACorruptOneIsRetriedThenDeadLetteredWithFfmpegsMessage) {
  MediaDir media("vff");
  std::filesystem::create_directory(media.path() / "out");
  kbus::test::MakeTestVideo(media / "good.mp4", 4);
  kbus::test::MakeCorruptVideo(media / "corrupt.mp4");
  Stack stack(media / "out");
  const std::string p = TestBroker::UniqueName("v") + "-";
  const auto started = std::chrono::steady_clock::now();
  stack.Send({p + "good", media / "good.mp4", 120});
  stack.Send({p + "corrupt", media / "corrupt.mp4", 120});

  const auto good = stack.WaitEnding(p + "good", 120s);
  ASSERT_TRUE(good.has_value()) << "no ending for the good video within 120 s";
  const auto encoded_after = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(good->how, "encoded");
  EXPECT_EQ(good->attempts, 1);
  EXPECT_EQ(good->output, (media.path() / "out" / (p + "good.120p.mp4")).string());
  EXPECT_EQ(kbus::test::ProbeHeight(good->output), 120);
  // ffmpeg prints no result line: the workflow records the file it made as the run's result.
  EXPECT_EQ(stack.ResultJson(p + "good"), R"({"output":")" + good->output + R"(","height":120})");
  // The progress came back to the workflow's input: rising, ending at 100 (the encode is fast,
  // so there may be no block between its start and its end).
  const std::vector<int> percents = stack.PercentsUpTo100(p + "good");
  ASSERT_FALSE(percents.empty());
  EXPECT_TRUE(std::adjacent_find(percents.begin(), percents.end(), std::greater_equal<int>()) == percents.end())
      << "strictly rising";
  EXPECT_EQ(percents.back(), 100);

  const auto corrupt = stack.WaitEnding(p + "corrupt", 120s);
  ASSERT_TRUE(corrupt.has_value()) << "no ending for the corrupt video within 120 s";
  EXPECT_EQ(corrupt->how, "dlq");
  EXPECT_EQ(corrupt->reason, "attempts-exhausted");
  EXPECT_EQ(corrupt->attempts, 2) << "retried once";
  EXPECT_EQ(corrupt->outcome, "failed");
  EXPECT_THAT(corrupt->error, HasSubstr("attempt 2 ended failed: "));
  EXPECT_THAT(corrupt->error, HasSubstr("corrupt.mp4: Invalid data found when processing input"));
  const auto exits = stack.Exits(p + "corrupt", 2);
  ASSERT_EQ(exits.size(), 2u);
  for (const auto& e : exits) {
    EXPECT_EQ(e.outcome, "failed");
    EXPECT_THAT(e.stderr_tail, HasSubstr("Invalid data found when processing input"));
  }
  EXPECT_TRUE(stack.Percents(p + "corrupt").empty());
  EXPECT_FALSE(std::filesystem::exists(media.path() / "out" / (p + "corrupt.120p.mp4")));

  std::string seen;
  for (int pc : percents) seen += " " + std::to_string(pc);
  std::printf("good video encoded %lld ms after it was sent, progress:%s\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(encoded_after).count()),
              seen.c_str());

#ifdef KBUS_CLI_PATH
  // `kbus watch` follows the job from the beginning of the topic and shows its percent.
  const kbus::test::ProcessResult watch = kbus::test::RunProcess(
      {KBUS_CLI_PATH, "watch", "--brokers", TestBroker::Get().bootstrap(), "--topic", stack.input_topic, "--job",
       p + "good", "--timeout-ms", "20000"},
      60s);
  EXPECT_EQ(watch.exit_code, 0) << watch.Describe();
  EXPECT_THAT(watch.out, HasSubstr(p + "good attempt 1 progress 100% done"));
  EXPECT_THAT(watch.out, HasSubstr(p + "good attempt 1 exited succeeded exit_code 0"));
#endif
}

TEST(VideoEncodingFfmpeg, AVideoIdThatIsNoFileNameOrAnOddHeightIsRejectedWithoutALaunch) {
  MediaDir media("vff-reject");
  kbus::test::MakeTestVideo(media / "good.mp4", 1);
  Stack stack(media.path().string());
  const std::string p = TestBroker::UniqueName("r") + "-";
  stack.Send({"../" + p + "escape", media / "good.mp4", 120});
  stack.Send({p + "odd", media / "good.mp4", 121});
  const auto escape = stack.WaitEnding("../" + p + "escape", 60s);
  const auto odd = stack.WaitEnding(p + "odd", 60s);
  ASSERT_TRUE(escape.has_value() && odd.has_value());
  EXPECT_EQ(escape->how, "dlq");
  EXPECT_EQ(escape->reason, "rejected");
  EXPECT_EQ(escape->attempts, 0);
  EXPECT_THAT(escape->error, HasSubstr("cannot name a file in the output directory"));
  EXPECT_EQ(odd->reason, "rejected");
  EXPECT_THAT(odd->error, HasSubstr("height must be an even number from 16 to 4320, not 121"));
  EXPECT_EQ(stack.Starts("../" + p + "escape") + stack.Starts(p + "odd"), 0) << "nothing launched";
  EXPECT_FALSE(std::filesystem::exists(media.path().parent_path() / (p + "escape.120p.mp4")));
  EXPECT_THAT(stack.Failed(p + "odd"), HasSubstr("rejected: height must be"));
}

}  // namespace
