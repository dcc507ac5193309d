// The Docker backend on a real engine (the docker_engine fixture: docker_rig.sh), without a
// broker: one container per attempt, a launch that finds its attempt's container follows it,
// a detached job keeps running and is followed to its end by another, a missing image or
// program is a launch failure, and only the group's containers are listed.

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "../../handlers/src/docker_engine.hpp"
#include "kbus/handlers/docker_backend.hpp"
#include "kbus/json.hpp"

namespace {

using kbus::handlers::AllowList;
using kbus::handlers::DockerBackend;
using kbus::handlers::DockerConfig;
using kbus::handlers::KeptJob;
using kbus::handlers::ProcessControl;
using kbus::handlers::ProcessObserver;
using kbus::handlers::ProcessOutcome;
using kbus::handlers::ProcessResult;
using kbus::handlers::ProcessSpec;
using kbus::handlers::detail::Engine;
using namespace std::chrono_literals;

std::string ReadRigFile(const std::string& name) {
  const char* dir = std::getenv("KBUS_TEST_DOCKER_DIR");
  if (dir == nullptr) return {};
  std::ifstream in(std::string(dir) + "/" + name);
  std::string line;
  std::getline(in, line);
  return line;
}

class DockerBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("KBUS_TEST_DOCKER_DIR");
    if (dir == nullptr) GTEST_SKIP() << "KBUS_TEST_DOCKER_DIR is not set: run through ctest (the docker_engine fixture)";
    if (std::ifstream(std::string(dir) + "/no-dockerd")) GTEST_SKIP() << "no dockerd on this machine";
    const std::string host = ReadRigFile("docker-host");
    image_ = ReadRigFile("image");
    ASSERT_EQ(host.rfind("unix://", 0), 0u) << "docker-host: " << host;
    socket_ = host.substr(7);
    group_ = "backend-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name();
    backend_ = std::make_unique<DockerBackend>(DockerConfig{socket_, group_});
    ASSERT_TRUE(backend_->Ping().ok());
  }

  void TearDown() override {
    if (!backend_) return;
    auto kept = backend_->ListKept();
    ASSERT_TRUE(kept.ok());
    EXPECT_TRUE(kept->empty()) << kept->size() << " containers of " << group_ << " left";
    for (const auto& k : *kept) backend_->Forget(k.handle);
  }

  ProcessSpec Spec(const std::string& job_key, std::vector<std::string> args) const {
    auto allow = AllowList::Parse("job = /fake-encoder\njob.image = " + image_ + "\njob.memory = 64m\n");
    EXPECT_TRUE(allow.ok());
    ProcessSpec spec = allow->Resolve("job", args, {}).value();
    spec.job_key = job_key;
    spec.labels = {{"kbus.partition", "t:0"}, {"kbus.job_id", job_key}};
    spec.kill_grace = 2s;
    return spec;
  }

  // The containers of this test's group, by asking the engine directly.
  int Containers() const {
    Engine engine(socket_);
    const std::string filter = "{\"label\":[\"kbus.group=" + group_ + "\"]}";
    auto reply = engine.Call("GET", "/containers/json?all=1&filters=" + Engine::Escape(filter));
    EXPECT_TRUE(reply.ok());
    kbus::JsonDocument doc;
    EXPECT_TRUE(doc.Parse(reply->body).ok());
    return static_cast<int>(doc.Root().Size());
  }

  std::string StartedAt(const std::string& id) const {
    auto reply = Engine(socket_).Call("GET", "/containers/" + id + "/json");
    EXPECT_TRUE(reply.ok());
    kbus::JsonDocument doc;
    EXPECT_TRUE(doc.Parse(reply->body).ok());
    return std::string(doc.Root().Find("State")->Find("StartedAt")->GetString());
  }

  std::string socket_, image_, group_;
  std::unique_ptr<DockerBackend> backend_;
};

TEST_F(DockerBackendTest, TwoRunsOfOneAttemptShareOneContainerAndOneResult) {
  const ProcessSpec spec = Spec("1:twice", {"--seconds", "2", "--steps", "2", "--output", "once.mp4"});
  std::promise<std::string> first_started;
  ProcessObserver first;
  first.started = [&](int, const std::string& handle, std::chrono::milliseconds) { first_started.set_value(handle); };
  ProcessControl c1, c2;
  auto a = std::async(std::launch::async, [&] { return backend_->Run(spec, first, c1); });
  const std::string handle = first_started.get_future().get();
  ASSERT_FALSE(handle.empty());
  // The same attempt again, while the first runs: a launch delivered again after a crash.
  std::string second_handle;
  ProcessObserver second;
  second.started = [&](int, const std::string& h, std::chrono::milliseconds) { second_handle = h; };
  const ProcessResult b = backend_->Run(spec, second, c2);
  const ProcessResult ra = a.get();
  EXPECT_EQ(second_handle, handle) << "the second run follows the first's container";
  EXPECT_EQ(ra.outcome, ProcessOutcome::kSucceeded) << ra.error << ra.stderr_tail;
  EXPECT_EQ(b.outcome, ProcessOutcome::kSucceeded) << b.error << b.stderr_tail;
  EXPECT_EQ(ra.result, R"({"output":"once.mp4","frames":50})");
  EXPECT_EQ(b.result, ra.result) << "the second read the whole output, from the start";
  EXPECT_EQ(Containers(), 1);

  // And once more after it ended (its exit not reported yet): reported as it ended, not run again.
  const std::string started_at = StartedAt(handle);
  ProcessControl c3;
  const ProcessResult c = backend_->Run(spec, {}, c3);
  EXPECT_EQ(c.outcome, ProcessOutcome::kSucceeded) << c.error;
  EXPECT_EQ(c.result, ra.result);
  EXPECT_EQ(c.handle, handle);
  EXPECT_EQ(StartedAt(handle), started_at) << "an ended container is never started again";
  backend_->Forget(ra.handle);
  EXPECT_EQ(Containers(), 0);
}

TEST_F(DockerBackendTest, ADetachedJobKeepsRunningAndAnotherFollowsItToItsEnd) {
  const ProcessSpec spec = Spec("1:detached", {"--seconds", "3", "--steps", "6"});
  std::promise<void> progressed;
  bool once = false;
  ProcessObserver observer;
  observer.progress = [&](const kbus::handlers::Progress&) {
    if (!once) progressed.set_value();
    once = true;
  };
  ProcessControl control;
  auto run = std::async(std::launch::async, [&] { return backend_->Run(spec, observer, control); });
  progressed.get_future().get();
  control.Detach();
  const ProcessResult left = run.get();
  EXPECT_EQ(left.outcome, ProcessOutcome::kDetached);

  auto kept = backend_->ListKept();
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);
  const KeptJob& job = kept->front();
  EXPECT_EQ(job.handle, left.handle);
  EXPECT_TRUE(job.running) << "detaching does not stop it";
  EXPECT_EQ(job.labels.at("kbus.partition"), "t:0");
  EXPECT_EQ(job.labels.at("kbus.group"), group_);

  std::vector<int> percents;
  std::chrono::milliseconds ran{-1};
  ProcessObserver adopter;
  adopter.started = [&](int, const std::string&, std::chrono::milliseconds r) { ran = r; };
  adopter.progress = [&](const kbus::handlers::Progress& p) { percents.push_back(p.percent); };
  ProcessControl control2;
  const ProcessResult end = backend_->Follow(job, spec, adopter, control2);
  EXPECT_EQ(end.outcome, ProcessOutcome::kSucceeded) << end.error;
  EXPECT_GT(ran.count(), 0) << "how long it ran before it was found";
  ASSERT_FALSE(percents.empty());
  EXPECT_EQ(percents.back(), 100);
  // The progress printed before the adoption is reported once, as its latest, not replayed.
  EXPECT_LE(percents.size(), 6u);
  for (std::size_t i = 1; i < percents.size(); ++i) EXPECT_LT(percents[i - 1], percents[i]);
  EXPECT_EQ(end.result, R"({"output":"out.mp4","frames":150})") << "a result line before or after the adoption";
  EXPECT_GE(end.duration, 2500ms);
  backend_->Forget(end.handle);
}

TEST_F(DockerBackendTest, AMissingImageOrProgramIsALaunchFailure) {
  ProcessSpec no_image = Spec("1:no-image", {});
  no_image.container.image = "kbus-no-such-image:1";
  ProcessControl c1;
  const ProcessResult r1 = backend_->Run(no_image, {}, c1);
  EXPECT_EQ(r1.outcome, ProcessOutcome::kLaunchFailed);
  EXPECT_NE(r1.error.find("image 'kbus-no-such-image:1' is not on the Docker engine"), std::string::npos) << r1.error;

  ProcessSpec no_program = Spec("1:no-program", {});
  no_program.path = "/no/such/program";
  ProcessControl c2;
  const ProcessResult r2 = backend_->Run(no_program, {}, c2);
  EXPECT_EQ(r2.outcome, ProcessOutcome::kLaunchFailed);
  EXPECT_NE(r2.error.find("the program could not be executed in the container"), std::string::npos) << r2.error;
  EXPECT_NE(r2.error.find("/no/such/program"), std::string::npos) << r2.error;
  EXPECT_EQ(Containers(), 1) << "kept until the launcher reported it";
  backend_->Forget(r2.handle);
  EXPECT_EQ(Containers(), 0);
}

TEST_F(DockerBackendTest, AContainerNameTakenByAnotherJobIsRefusedNotFollowed) {
  // A container of another attempt under this attempt's name: made by hand, as a hash collision
  // would make it.
  const ProcessSpec spec = Spec("1:collide", {});
  Engine engine(socket_);
  const std::string name = DockerBackend::ContainerName(group_, spec.job_key);
  auto created = engine.Call("POST", "/containers/create?name=" + name,
                             R"({"Image":")" + image_ + R"(","Entrypoint":["/fake-encoder"],"Labels":{"kbus.group":")" +
                                 group_ + R"(","kbus.job_key":"1:someone-else"}})");
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->status, 201) << created->body;
  ProcessControl control;
  const ProcessResult r = backend_->Run(spec, {}, control);
  EXPECT_EQ(r.outcome, ProcessOutcome::kLaunchFailed);
  EXPECT_NE(r.error.find("is taken by another job"), std::string::npos) << r.error;
  EXPECT_EQ(Containers(), 1);
  auto kept = backend_->ListKept();
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_FALSE(kept->front().started) << "created, never started";
  backend_->Forget(kept->front().handle);
}

TEST_F(DockerBackendTest, ContainerNamesAreStablePerGroupAndAttempt) {
  const std::string a = DockerBackend::ContainerName("g", "1:job");
  EXPECT_EQ(a, DockerBackend::ContainerName("g", "1:job"));
  EXPECT_NE(a, DockerBackend::ContainerName("g", "2:job"));
  EXPECT_NE(a, DockerBackend::ContainerName("h", "1:job"));
  EXPECT_EQ(a.size(), 21u);
  EXPECT_EQ(a.rfind("kbus-", 0), 0u);
}

TEST_F(DockerBackendTest, ListsOnlyItsOwnGroupsContainers) {
  DockerBackend other(DockerConfig{socket_, group_ + "-other"});
  ProcessSpec spec = Spec("1:theirs", {"--seconds", "30", "--steps", "30"});
  // Running: its program printed (a signal that comes before the init started it waits).
  std::promise<void> started;
  bool once = false;
  ProcessObserver observer;
  observer.progress = [&](const kbus::handlers::Progress&) {
    if (!std::exchange(once, true)) started.set_value();
  };
  ProcessControl control;
  auto run = std::async(std::launch::async, [&] { return other.Run(spec, observer, control); });
  started.get_future().get();
  auto mine = backend_->ListKept();
  ASSERT_TRUE(mine.ok());
  EXPECT_TRUE(mine->empty());
  control.Cancel();
  const ProcessResult r = run.get();
  EXPECT_EQ(r.outcome, ProcessOutcome::kCancelled);
  EXPECT_EQ(r.signal, 15) << "SIGTERM ended it, through the init";
  other.Forget(r.handle);
}

}  // namespace
