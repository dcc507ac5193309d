// Launchers with the Docker backend hand their jobs over: a launcher that lets go of a
// partition (a revoke) or stops leaves its containers running, and the next owner of the
// partition adopts them (Launcher::Adopt, which kbus-launcher calls from the worker's
// assignment hook). The adopter reports the job as if it had started it: heartbeats counting
// from the container's start, the exit once, event ids of its own; it stops a job cancelled
// while nobody watched, reports a job that ended meanwhile, and removes a container that never
// started. On the engine of the docker_engine fixture, with launchers in this process.

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "../../handlers/src/docker_engine.hpp"
#include "it_support.hpp"
#include "kbus/handlers/docker_backend.hpp"
#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/producer_sink.hpp"
#include "kbus/json.hpp"
#include "launcher_events.hpp"

namespace {

using kbus::handlers::CancelProcess;
using kbus::handlers::DockerBackend;
using kbus::handlers::Launcher;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessProgress;
using kbus::handlers::ProcessStarted;
using kbus::handlers::detail::Engine;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using lt::EventLog;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string RigFile(const std::string& dir, const std::string& name) {
  std::ifstream in(dir + "/" + name);
  std::string line;
  std::getline(in, line);
  return line;
}

class LauncherAdoptTest : public ::testing::Test {
 protected:
  // One launcher: its own worker (and consumer group) on `launch_topic` and the shared control
  // topic, the shared backend scope (group_).
  struct Member {
    std::unique_ptr<DockerBackend> backend;
    std::unique_ptr<Launcher> launcher;
    kbus::HandlerRegistry handlers;
    std::unique_ptr<it::RunningWorker> worker;
    ~Member() {
      if (worker) worker->Stop();
      if (launcher) launcher->Shutdown();
    }
  };

  void SetUp() override {
    const char* dir = std::getenv("KBUS_TEST_DOCKER_DIR");
    if (dir == nullptr) GTEST_SKIP() << "KBUS_TEST_DOCKER_DIR is not set: run through ctest (the docker_engine fixture)";
    if (std::ifstream(std::string(dir) + "/no-dockerd")) GTEST_SKIP() << "no dockerd on this machine";
    socket_ = RigFile(dir, "docker-host").substr(7);
    image_ = RigFile(dir, "image");
    TestBroker::Get().CreateTopic(launch_, 1);
    TestBroker::Get().CreateTopic(control_, 1);
    TestBroker::Get().CreateTopic(events_, 1);
    log_ = std::make_unique<EventLog>(events_);
  }

  void TearDown() override {
    members_.clear();  // shut down: containers left running stay (the backend keeps them)
    if (socket_.empty()) return;
    DockerBackend backend({socket_, group_});
    auto kept = backend.ListKept();
    ASSERT_TRUE(kept.ok());
    EXPECT_TRUE(kept->empty()) << kept->size() << " containers of " << group_ << " left";
    for (const auto& k : *kept) backend.Forget(k.handle);
  }

  // A launcher reading `launch` (default: this test's) and the control topic in a group of its
  // own; none when `with_worker` is false (it only adopts).
  Launcher& AddMember(bool with_worker, const std::string& launch = {}, int max_processes = 8) {
    auto m = std::make_unique<Member>();
    m->backend = std::make_unique<DockerBackend>(kbus::handlers::DockerConfig{socket_, group_});
    auto allow = kbus::handlers::AllowList::Parse("enc = /fake-encoder\nenc.image = " + image_ + "\n");
    EXPECT_TRUE(allow.ok());
    kbus::handlers::LauncherConfig config;
    config.max_processes = max_processes;
    config.kill_grace = milliseconds(500);
    config.default_heartbeat = milliseconds(300);
    config.host = "member-" + std::to_string(members_.size());
    config.reply_topics = {events_};
    m->launcher = std::make_unique<Launcher>(config, std::move(allow.value()), *m->backend, sink_);
    if (with_worker) {
      kbus::HandlerOptions l, c;
      l.topic = launch.empty() ? launch_ : launch;
      c.topic = control_;
      m->launcher->Register(m->handlers, l, c);
      m->worker = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(TestBroker::UniqueName("adopt-g")), m->handlers);
    }
    members_.push_back(std::move(m));
    return *members_.back()->launcher;
  }

  void Launch(const std::string& job, std::vector<std::string> args) {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.program = "enc";
    cmd.args = std::move(args);
    cmd.reply_to = events_;
    cmd.heartbeat_interval = milliseconds(300);
    ASSERT_TRUE(producer_.SendSync(kbus::BuildRecord(cmd, {.topic = launch_, .key = job})).ok());
  }

  // The job's container's state ("running", "exited"), "" when there is none.
  std::string ContainerState(const std::string& job) const {
    Engine engine(socket_);
    const std::string filter = R"({"label":["kbus.group=)" + group_ + R"(","kbus.job_id=)" + job + R"("]})";
    auto reply = engine.Call("GET", "/containers/json?all=1&filters=" + Engine::Escape(filter));
    EXPECT_TRUE(reply.ok());
    kbus::JsonDocument doc;
    EXPECT_TRUE(doc.Parse(reply->body).ok());
    if (doc.Root().Size() == 0) return "";
    return std::string(doc.Root().At(0).Find("State")->GetString());
  }

  // Every event of `job` has an id of its own.
  void ExpectDistinctIds(const std::string& job) {
    std::set<std::string> ids;
    const auto seen = log_->Of(job);
    for (const auto& s : seen) ids.insert(s.message_id);
    EXPECT_EQ(ids.size(), seen.size()) << "an adopter's events do not repeat the ids of the launcher before it";
  }

  std::string Partition() const { return Launcher::PartitionLabel(launch_, 0); }

  std::string socket_, image_;
  std::string group_ = TestBroker::UniqueName("adopt-scope");
  std::string launch_ = TestBroker::UniqueName("adopt-launch");
  std::string control_ = TestBroker::UniqueName("adopt-control");
  std::string events_ = TestBroker::UniqueName("adopt-events");
  kbus::kafka::Producer producer_{it::ProducerConfig()};
  kbus::handlers::ProducerSink sink_{producer_};
  std::unique_ptr<EventLog> log_;
  std::vector<std::unique_ptr<Member>> members_;
};

TEST_F(LauncherAdoptTest, ARevokedPartitionsJobRunsOnAndItsNextOwnerReportsItOnce) {
  Launcher& first = AddMember(true);
  Launch("handover", {"--seconds", "4", "--steps", "8"});
  ASSERT_TRUE(WaitFor([&] { return log_->Count<ProcessProgress>("handover") >= 2; }, seconds(60)));
  first.LetGo({Partition()});
  EXPECT_EQ(first.Stats().detached, 1u);
  EXPECT_EQ(first.Stats().running, 0);
  EXPECT_EQ(ContainerState("handover"), "running") << "letting go does not stop it";
  const int heartbeats_before = log_->Count<ProcessHeartbeat>("handover");

  Launcher& next = AddMember(false);
  next.Adopt({Partition()});
  EXPECT_EQ(next.Stats().adopted, 1u);
  const ProcessExited exited = log_->WaitExited("handover");
  EXPECT_EQ(exited.outcome, "succeeded") << exited.error;
  EXPECT_EQ(exited.result, R"({"output":"out.mp4","frames":200})");
  EXPECT_GE(exited.duration, milliseconds(3500)) << "the container's whole run";
  EXPECT_EQ(log_->Count<ProcessStarted>("handover"), 1);
  EXPECT_EQ(log_->Count<ProcessExited>("handover"), 1);
  EXPECT_TRUE(WaitFor([&] { return ContainerState("handover").empty(); }, seconds(10))) << "removed once reported";
  // The adopter's heartbeats count from the container's start, not from the adoption.
  const auto seen = log_->Of("handover");
  int adopter_heartbeats = 0;
  for (const auto& s : seen) {
    if (const auto* h = std::get_if<ProcessHeartbeat>(&s.event); h && adopter_heartbeats++ >= heartbeats_before) {
      EXPECT_GE(h->elapsed, milliseconds(600));
    }
  }
  ExpectDistinctIds("handover");
  // What it printed before the adoption is not reported again, but for its latest progress,
  // which the adopter reports once: progress goes on increasing with one repeat at most.
  int last = -1, repeats = 0;
  for (const auto& s : seen) {
    if (const auto* p = std::get_if<ProcessProgress>(&s.event)) {
      EXPECT_GE(p->percent, last);
      if (p->percent == last) ++repeats;
      last = p->percent;
    }
  }
  EXPECT_LE(repeats, 1);
  EXPECT_EQ(last, 100);
}

TEST_F(LauncherAdoptTest, AStoppingLauncherLeavesItsJobsRunningForTheNext) {
  Launcher& first = AddMember(true);
  Launch("shutdown", {"--seconds", "3", "--steps", "3"});
  ASSERT_TRUE(log_->WaitStarted("shutdown").has_value());
  members_.front()->worker->Stop();
  first.Shutdown();
  EXPECT_EQ(first.Stats().detached, 1u);
  EXPECT_EQ(log_->Count<ProcessExited>("shutdown"), 0) << "not lost: left running";
  EXPECT_EQ(ContainerState("shutdown"), "running");
  AddMember(false).Adopt({Partition()});
  EXPECT_EQ(log_->WaitExited("shutdown").outcome, "succeeded");
  EXPECT_EQ(log_->Count<ProcessExited>("shutdown"), 1);
}

TEST_F(LauncherAdoptTest, AJobThatEndedWhileNobodyWatchedIsReportedWithItsExitCode) {
  Launcher& first = AddMember(true);
  Launch("ended", {"--seconds", "1", "--steps", "1", "--exit-code", "3", "--stderr", "gave up"});
  ASSERT_TRUE(log_->WaitStarted("ended").has_value());
  first.LetGo({Partition()});
  ASSERT_TRUE(WaitFor([&] { return ContainerState("ended") == "exited"; }, seconds(30)));
  EXPECT_EQ(log_->Count<ProcessExited>("ended"), 0);
  AddMember(false).Adopt({Partition()});
  const ProcessExited exited = log_->WaitExited("ended");
  EXPECT_EQ(exited.outcome, "failed");
  EXPECT_EQ(exited.exit_code, 3);
  EXPECT_NE(exited.stderr_tail.find("gave up"), std::string::npos) << exited.stderr_tail;
  EXPECT_TRUE(WaitFor([&] { return ContainerState("ended").empty(); }, seconds(10)));
}

TEST_F(LauncherAdoptTest, AJobCancelledWhileNobodyWatchedIsStoppedByItsAdopter) {
  Launcher& first = AddMember(true);
  Launch("unwanted", {"--seconds", "60", "--steps", "60"});
  ASSERT_TRUE(log_->WaitStarted("unwanted").has_value());
  first.LetGo({Partition()});
  // The next owner reads the cancel before it finds the container (its worker reads the
  // control topic; its launch topic is another, empty one).
  Launcher& next = AddMember(true, TestBroker::UniqueName("adopt-other-launch"));
  ASSERT_TRUE(producer_.SendSync(kbus::BuildRecord(CancelProcess{"unwanted", "not needed"}, {.topic = control_, .key = "unwanted"})).ok());
  ASSERT_TRUE(WaitFor([&] { return next.Stats().cancels == 1; }, seconds(60)));
  next.Adopt({Partition()});
  const ProcessExited exited = log_->WaitExited("unwanted");
  EXPECT_EQ(exited.outcome, "cancelled");
  EXPECT_EQ(exited.signal, 15);
  EXPECT_NE(exited.error.find("cancelled while no launcher watched it"), std::string::npos) << exited.error;
  EXPECT_TRUE(WaitFor([&] { return ContainerState("unwanted").empty(); }, seconds(10)));
}

TEST_F(LauncherAdoptTest, AdoptingAgainOrAnotherPartitionTakesNothingTwice) {
  Launcher& first = AddMember(true);
  Launch("once", {"--seconds", "2", "--steps", "2"});
  ASSERT_TRUE(log_->WaitStarted("once").has_value());
  first.Adopt({Partition()});  // it follows the job already
  first.Adopt({Launcher::PartitionLabel(launch_, 1), Launcher::PartitionLabel(control_, 0)});
  EXPECT_EQ(first.Stats().adopted, 0u);
  EXPECT_EQ(log_->WaitExited("once").outcome, "succeeded");
  EXPECT_EQ(log_->Count<ProcessExited>("once"), 1);
}

TEST_F(LauncherAdoptTest, AnAdopterFollowsEveryKeptJobEvenPastItsLimitWithTheSlotsItHas) {
  Launcher& first = AddMember(true);
  Launch("kept-1", {"--seconds", "4", "--steps", "4"});
  Launch("kept-2", {"--seconds", "4", "--steps", "4"});
  ASSERT_TRUE(log_->WaitStarted("kept-1").has_value());
  ASSERT_TRUE(log_->WaitStarted("kept-2").has_value());
  first.LetGo({Partition()});
  Launcher& small = AddMember(false, {}, 1);
  small.Adopt({Partition()});
  EXPECT_EQ(small.Stats().adopted, 2u);
  EXPECT_EQ(small.Stats().running, 2) << "both followed, one of them outside --max-processes";
  EXPECT_EQ(small.slots()->in_use(), 1) << "the one slot it has is taken, no more";
  EXPECT_EQ(log_->WaitExited("kept-1").outcome, "succeeded");
  EXPECT_EQ(log_->WaitExited("kept-2").outcome, "succeeded");
  EXPECT_TRUE(WaitFor([&] { return small.Stats().running == 0; }, seconds(10)));
  EXPECT_EQ(small.slots()->in_use(), 0);
}

TEST_F(LauncherAdoptTest, AContainerCreatedButNeverStartedIsRemovedNotAdopted) {
  Engine engine(socket_);
  auto created = engine.Call("POST", "/containers/create?name=" + DockerBackend::ContainerName(group_, "1:never"),
                             R"({"Image":")" + image_ + R"(","Entrypoint":["/fake-encoder"],"Labels":{"kbus.group":")" +
                                 group_ + R"(","kbus.job_id":"never","kbus.job_key":"1:never","kbus.partition":")" +
                                 Partition() + R"("}})");
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->status, 201) << created->body;
  EXPECT_EQ(ContainerState("never"), "created");
  Launcher& next = AddMember(false);
  next.Adopt({Partition()});
  EXPECT_EQ(ContainerState("never"), "") << "its command was never acknowledged: it comes again";
  EXPECT_EQ(next.Stats().adopted, 0u);
}

}  // namespace
