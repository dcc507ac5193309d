// The flagship's services on a broker, seen through their operations ports: EncodeService and
// LauncherService (examples/video-encoding/services.hpp) run the fake encoder with
// http_port = -1, and /metrics and /readyz of each tell what happened: launches and exits by
// outcome, workflow instances by status, and readiness once the workflow's state is loaded.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "encode_workflow.hpp"
#include "it_support.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/ops/server.hpp"
#include "services.hpp"
#include "video_topics.hpp"
#include "exposition.hpp"

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;
using namespace std::chrono_literals;


// One sample scraped from a port's /metrics; -1 when it is not there or nothing answered.
double Scrape(int port, const std::string& series) {
  const kbus::ops::ProbeResult r = kbus::ops::Get("127.0.0.1", port, "/metrics");
  if (r.status != 200) return -1;
  return kbus::test::SampleValue(r.body, series).value_or(-1);
}

TEST(VideoOperations, MetricsAndReadinessOfTheWorkflowHostAndTheLauncherTellWhatHappened) {
  video::EncodeSettings s;
  const std::string tag = video_test::MakeTopics(s, "vops");
  s.encoder = "fake";
  s.fake_seconds = 0.2;
  s.retry.initial_interval = 200ms;
  s.retry.maximum_interval = 1s;
  s.retry.maximum_attempts = 2;
  s.run_timeout = 30s;
  s.heartbeat_interval = 500ms;
  s.heartbeat_timeout = 10s;

  auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " FAKE_ENCODER_PATH "\n");
  ASSERT_TRUE(allow.ok());
  kbus::handlers::LauncherConfig lc;
  lc.max_processes = 4;
  lc.kill_grace = 1s;
  lc.default_heartbeat = 500ms;
  lc.host = "ops-test";
  lc.reply_topics = {s.name + ".in"};
  kbus::kafka::WorkerConfig launcher_config = it::WorkerConfigFor(tag + "-launcher");
  launcher_config.http_port = -1;
  kbus::kafka::WorkerConfig encoder_config = it::WorkerConfigFor(video_test::WorkflowGroup(tag));
  encoder_config.http_port = -1;
  video::LauncherService launcher(launcher_config, std::move(*allow), lc, s.launcher_topic, s.control_topic);
  video::EncodeService encoder(encoder_config, s);
  const int launcher_port = launcher.worker().http_port();
  const int encoder_port = encoder.worker().http_port();
  ASSERT_GT(launcher_port, 0);
  ASSERT_GT(encoder_port, 0);
  std::thread launcher_thread([&] { launcher.Run(); });
  std::thread encoder_thread([&] { encoder.Run(); });
  struct Join {
    video::LauncherService& launcher;
    video::EncodeService& encoder;
    std::thread& a;
    std::thread& b;
    ~Join() {
      encoder.Stop();
      launcher.Stop();
      b.join();
      a.join();
    }
  } join{launcher, encoder, launcher_thread, encoder_thread};

  // Ready once the group is joined and every assigned partition's state is loaded: this one
  // member owns all four input partitions.
  kbus::ops::ProbeResult ready;
  ASSERT_TRUE(WaitFor([&] {
    ready = kbus::ops::Get("127.0.0.1", encoder_port, "/readyz");
    return ready.status == 200;
  }, 60s)) << ready.status << " " << ready.body;
  const std::string component = "\"workflow " + s.name + "\":{\"live\":true,\"ready\":true,";
  EXPECT_NE(ready.body.find(component), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("\"partitions\":4,\"partitions_loaded\":4"), std::string::npos) << ready.body;
  ASSERT_TRUE(WaitFor([&] { return kbus::ops::Get("127.0.0.1", launcher_port, "/readyz").status == 200; }, 60s));
  EXPECT_NE(kbus::ops::Get("127.0.0.1", launcher_port, "/readyz").body.find("\"launcher\":{\"live\":true"),
            std::string::npos);

  kbus::kafka::Producer producer(it::ProducerConfig());
  const std::string p = tag + "-";
  ASSERT_TRUE(producer.Send(video::EncodeVideo{p + "ok", "holiday.mp4", 720}, {.topic = s.command_topic}).ok());
  ASSERT_TRUE(producer.Send(video::EncodeVideo{p + "flaky", "flaky-1-talk.mp4", 720}, {.topic = s.command_topic}).ok());
  ASSERT_TRUE(producer.Send(video::EncodeVideo{p + "broken", "broken.mp4", 720}, {.topic = s.command_topic}).ok());

  // Two encoded (one after a retry), one dead-lettered after its second attempt.
  const std::string w = "{workflow=\"" + s.name + "\"";
  // The gauges follow the instances in memory, the run counters the state records the broker
  // acknowledged, a moment later: wait for both.
  ASSERT_TRUE(WaitFor([&] {
    return Scrape(encoder_port, "kbus_workflow_instances" + w + ",status=\"completed\"}") == 2 &&
           Scrape(encoder_port, "kbus_workflow_instances" + w + ",status=\"failed\"}") == 1 &&
           Scrape(encoder_port, "kbus_workflow_runs_total" + w + ",result=\"failed\"}") >= 1 &&
           Scrape(encoder_port, "kbus_workflow_runs_total" + w + ",result=\"completed\"}") >= 2;
  }, 120s)) << kbus::ops::Get("127.0.0.1", encoder_port, "/metrics").body;
  EXPECT_EQ(Scrape(encoder_port, "kbus_workflow_instances" + w + ",status=\"running\"}"), 0);
  EXPECT_EQ(Scrape(encoder_port, "kbus_workflow_runs_total" + w + ",result=\"started\"}"), 3);
  EXPECT_EQ(Scrape(encoder_port, "kbus_workflow_runs_total" + w + ",result=\"completed\"}"), 2);
  EXPECT_EQ(Scrape(encoder_port, "kbus_workflow_runs_total" + w + ",result=\"failed\"}"), 1);
  EXPECT_GE(Scrape(encoder_port, "kbus_workflow_steps_total" + w + ",type=\"video.EncodeVideo\",result=\"applied\"}"), 3);
  EXPECT_GE(Scrape(encoder_port, "kbus_workflow_timeouts_fired_total" + w + "}"), 2) << "the two retries' waits";
  EXPECT_GT(Scrape(encoder_port, "kbus_workflow_state_write_seconds_count" + w + "}"), 3);

  // Five attempts ran: ok once, flaky twice, broken twice; the last exit may still be counted
  // after the workflow has seen it.
  const std::string fake = "{program=\"fake-encoder\"";
  EXPECT_TRUE(WaitFor([&] {
    return Scrape(launcher_port, "kbus_launcher_exits_total" + fake + ",outcome=\"failed\"}") == 3;
  }, 30s)) << kbus::ops::Get("127.0.0.1", launcher_port, "/metrics").body;
  EXPECT_EQ(Scrape(launcher_port, "kbus_launcher_launches_total" + fake + "}"), 5);
  EXPECT_EQ(Scrape(launcher_port, "kbus_launcher_exits_total" + fake + ",outcome=\"succeeded\"}"), 2);
  EXPECT_EQ(Scrape(launcher_port, "kbus_launcher_exits_total" + fake + ",outcome=\"lost\"}"), 0);
  EXPECT_EQ(Scrape(launcher_port, "kbus_launcher_process_duration_seconds_count" + fake + "}"), 5);
  EXPECT_EQ(Scrape(launcher_port, "kbus_launcher_processes_running"), 0);
  // The worker's own series are on the same port.
  EXPECT_NE(kbus::ops::Get("127.0.0.1", launcher_port, "/metrics").body.find("kbus_"), std::string::npos);
}

}  // namespace
