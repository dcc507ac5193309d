// Two DelegatedCommand workflows in one registry, as one worker hosts them: both take the
// launcher's event types, each on its own input topic (the reply_to of its launches), and each
// sees only the events sent there.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/testing/in_memory_bus.hpp"
#include "kbus/workflows/delegated_command.hpp"
#include "kbus/workflows/host.hpp"
#include "kbus/workflows/memory_state_store.hpp"

namespace {

struct Encode {
  std::string clip;
};
struct Thumbnail {
  std::string clip;
};

}  // namespace

template <>
struct kbus::MessageTraits<Encode> {
  static constexpr std::string_view kType = "clips.Encode";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "clips.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("clip", &Encode::clip));
};
template <>
struct kbus::MessageTraits<Thumbnail> {
  static constexpr std::string_view kType = "clips.Thumbnail";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "clips.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("clip", &Thumbnail::clip));
};

namespace {

using namespace std::chrono_literals;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessStarted;
using kbus::workflows::DelegatedCommand;
using kbus::workflows::DelegatedOptions;
using kbus::workflows::DelegatedState;
using kbus::workflows::LaunchSpec;

constexpr std::string_view kEncodeIn = "clips.encode.in";
constexpr std::string_view kThumbnailIn = "clips.thumbnail.in";

template <class Cmd>
DelegatedOptions<Cmd> Options(std::string program) {
  DelegatedOptions<Cmd> o;
  // The same workflow id in both workflows on purpose: only the topic tells their events apart.
  // (Against a real launcher the job ids must differ too, as (job id, attempt) names a launch:
  // the video example's thumbnail workflow uses "<video_id>.thumbnail".)
  o.id = [](const Cmd& c) { return c.clip; };
  o.launch = [program](const Cmd&, int) { return LaunchSpec{program, {}, {}}; };
  o.run_timeout = 5min;
  o.heartbeat_interval = 10s;
  return o;
}

class TwoDelegatedCommands : public ::testing::Test {
 protected:
  TwoDelegatedCommands()
      : encode_wf_(DelegatedCommand<Encode>("clips.encode", Options<Encode>("encoder"))),
        thumbnail_wf_(DelegatedCommand<Thumbnail>("clips.thumbnail", Options<Thumbnail>("thumbnailer"))),
        encode_(encode_wf_, Config(), encode_store_),
        thumbnail_(thumbnail_wf_, Config(), thumbnail_store_) {
    encode_.Register(registry_);
    thumbnail_.Register(registry_);  // the launcher's event types again, on another topic
    bus_ = std::make_unique<kbus::testing::InMemoryBus>(registry_, kbus::testing::InMemoryOptions{"clips", 5});
    encode_.OnAssigned({0});  // the in-memory bus has one partition
    thumbnail_.OnAssigned({0});
  }

  kbus::workflows::HostConfig Config() {
    kbus::workflows::HostConfig c;
    c.group = "clips";
    c.host = "test-host";
    c.now_ms = [this] { return now_ms_; };
    c.send = [this](const kbus::OutgoingRecord& r) {
      bus_->Append(r);
      return kbus::Ok();
    };
    return c;
  }

  // An event as the launcher sends it: to the launch's reply_to, keyed and tagged by the job id.
  template <class E>
  void Event(std::string_view topic, const E& e) {
    kbus::SendOptions o;
    o.topic = std::string(topic);
    o.key = e.job_id;
    o.workflow_id = e.job_id;
    bus_->Send(e, o);
    bus_->RunUntilIdle();
  }
  static ProcessExited Exit(int attempt, std::string outcome, int exit_code) {
    ProcessExited e;
    e.job_id = "c-1";
    e.attempt = attempt;
    e.outcome = std::move(outcome);
    e.exit_code = exit_code;
    return e;
  }
  static DelegatedState StateOf(const kbus::workflows::WorkflowHost& host) {
    auto in = host.Instance("c-1");
    EXPECT_TRUE(in.has_value());
    auto s = kbus::FromJson<DelegatedState>(in ? in->state_json : "{}");
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : DelegatedState{};
  }

  std::int64_t now_ms_ = 1'767'225'600'000;
  kbus::HandlerRegistry registry_;
  std::unique_ptr<kbus::testing::InMemoryBus> bus_;
  kbus::workflows::MemoryStateStore encode_store_, thumbnail_store_;
  kbus::workflows::Workflow<DelegatedState> encode_wf_, thumbnail_wf_;
  kbus::workflows::WorkflowHost encode_, thumbnail_;
};

TEST_F(TwoDelegatedCommands, ShareOneRegistryWithARoutePerInputTopic) {
  for (const auto& type : {kbus::MessageTraits<ProcessStarted>::kType, kbus::MessageTraits<ProcessHeartbeat>::kType,
                           kbus::MessageTraits<ProcessExited>::kType}) {
    EXPECT_EQ(registry_.TopicsOf(type), (std::vector<std::string>{std::string(kEncodeIn), std::string(kThumbnailIn)}))
        << type;
    ASSERT_NE(registry_.Find(type, kEncodeIn), nullptr);
    EXPECT_NE(registry_.Find(type, kEncodeIn), registry_.Find(type, kThumbnailIn));
  }
}

TEST_F(TwoDelegatedCommands, EachGetsOnlyTheLauncherEventsSentToItsInput) {
  bus_->Send(Encode{"c-1"});
  bus_->Send(Thumbnail{"c-1"});
  bus_->RunUntilIdle();
  const auto launches = bus_->Messages<LaunchProcess>(kbus::handlers::kLauncherTopic);
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_EQ(launches[0].program, "encoder");
  EXPECT_EQ(launches[0].reply_to, kEncodeIn);
  EXPECT_EQ(launches[1].program, "thumbnailer");
  EXPECT_EQ(launches[1].reply_to, kThumbnailIn);

  // The encoding runs and succeeds: the thumbnail's run, with the same id, hears none of it.
  Event(kEncodeIn, ProcessStarted{"c-1", 1, "encoder", 41, "h"});
  Event(kEncodeIn, ProcessHeartbeat{"c-1", 1, 1000ms, 50});
  Event(kEncodeIn, Exit(1, "succeeded", 0));
  EXPECT_EQ(encode_.Instance("c-1")->status, "completed");
  EXPECT_EQ(thumbnail_.Instance("c-1")->status, "running");
  EXPECT_EQ(StateOf(thumbnail_).phase, "launching") << "not even started, as far as it heard";

  // The thumbnail's attempt fails and waits for its retry: the completed encoding is untouched.
  Event(kThumbnailIn, ProcessStarted{"c-1", 1, "thumbnailer", 42, "h"});
  EXPECT_EQ(StateOf(thumbnail_).phase, "running");
  Event(kThumbnailIn, Exit(1, "failed", 1));
  EXPECT_EQ(StateOf(thumbnail_).phase, "waiting");
  EXPECT_EQ(StateOf(thumbnail_).history, std::vector<std::string>{"1:failed exit 1"});
  EXPECT_EQ(encode_.Instance("c-1")->status, "completed");
  EXPECT_EQ(StateOf(encode_).history, std::vector<std::string>{"1:succeeded"});
  EXPECT_TRUE(bus_->DeadLetters().empty());
  EXPECT_EQ(encode_.Stats().completed, 1u);
  EXPECT_EQ(thumbnail_.Stats().completed, 0u);
}

TEST_F(TwoDelegatedCommands, AnEventOnNeitherInputIsNoOnesAndIsSkipped) {
  bus_->Send(Encode{"c-1"});
  bus_->RunUntilIdle();
  const auto before = bus_->skipped();
  // A launcher event on a topic the worker reads but neither workflow takes it on (here the
  // command topic): which workflow it was meant for is not guessed. Being an event, it is
  // skipped, as an event type nobody here handles is.
  kbus::SendOptions o;
  o.topic = std::string(kbus::MessageTraits<Encode>::kTopic);
  o.key = "c-1";
  o.workflow_id = "c-1";
  bus_->Send(Exit(1, "succeeded", 0), o);
  bus_->RunUntilIdle();
  EXPECT_EQ(bus_->skipped(), before + 1);
  EXPECT_EQ(encode_.Instance("c-1")->status, "running");
  EXPECT_TRUE(bus_->DeadLetters().empty());
}

// Two workflows started by the same command type, each on a command topic of its own: each
// host also registers its routes on its own input topic, so the command's re-keyed copy finds
// the right workflow there, and each starts only from its own command topic.
TEST(SameStarterTypeOnTwoTopics, EachWorkflowStartsFromItsOwnCommandTopicOnly) {
  auto make = [](const std::string& name, const std::string& command_topic) {
    kbus::workflows::Workflow<DelegatedState> wf(name);
    wf.StartedBy<Encode>([](const Encode& e) { return e.clip; },
                         [](const Encode&, DelegatedState& s, kbus::workflows::WorkflowContext&) { s.phase = "seen"; },
                         command_topic);
    return wf;
  };
  auto first_wf = make("first", "first.commands");
  auto second_wf = make("second", "second.commands");
  kbus::workflows::MemoryStateStore first_store, second_store;
  std::unique_ptr<kbus::testing::InMemoryBus> bus;
  kbus::workflows::HostConfig config;
  config.group = "clips";
  config.send = [&bus](const kbus::OutgoingRecord& r) {
    bus->Append(r);
    return kbus::Ok();
  };
  kbus::workflows::WorkflowHost first(first_wf, config, first_store);
  kbus::workflows::WorkflowHost second(second_wf, config, second_store);
  kbus::HandlerRegistry registry;
  first.Register(registry);
  second.Register(registry);  // the same type: on second.commands and second.in
  bus = std::make_unique<kbus::testing::InMemoryBus>(registry, kbus::testing::InMemoryOptions{"clips", 5});
  first.OnAssigned({0});
  second.OnAssigned({0});

  bus->Send(Encode{"a"}, {.topic = "first.commands"});
  bus->Send(Encode{"b"}, {.topic = "second.commands"});
  bus->RunUntilIdle();
  EXPECT_TRUE(first.Instance("a").has_value());
  EXPECT_FALSE(first.Instance("b").has_value());
  EXPECT_TRUE(second.Instance("b").has_value());
  EXPECT_FALSE(second.Instance("a").has_value());
  EXPECT_EQ(first.Stats().rekeyed, 1u);
  EXPECT_EQ(second.Stats().rekeyed, 1u);
  EXPECT_TRUE(bus->DeadLetters().empty());
}

}  // namespace
