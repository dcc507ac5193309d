#include "kbus/health.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

#include "kbus/json.hpp"

namespace {

using kbus::health::Board;
using kbus::health::ProbeHandle;
using kbus::health::Report;

// The board's answer, parsed; fails the test when it is not one line of JSON.
kbus::JsonDocument Parsed(const Board::Answer& a) {
  EXPECT_EQ(a.json.find('\n'), std::string::npos) << a.json;
  kbus::JsonDocument doc;
  EXPECT_TRUE(doc.Parse(a.json).ok()) << a.json;
  return doc;
}

TEST(Health, IsLiveButNotReadyBeforeAnyProbeIsRegistered) {
  Board board;
  const Board::Answer a = board.Check();
  EXPECT_TRUE(a.live);
  EXPECT_FALSE(a.ready);
  EXPECT_EQ(a.json,
            "{\"status\":\"not_ready\",\"live\":true,\"ready\":false,\"shutting_down\":false,\"active_work\":0,"
            "\"components\":{}}");
}

TEST(Health, AnswersEveryComponentWithItsDetailsAndTheSumOfActiveWork) {
  Board board;
  ProbeHandle worker = board.Add("worker", [] {
    return Report{.active_work = 3,
                  .details = {{"group", std::string("shop")}, {"assigned_partitions", std::int64_t{4}},
                              {"joined", true}}};
  });
  ProbeHandle launcher = board.Add("launcher", [] { return Report{.active_work = 2}; });
  const Board::Answer a = board.Check();
  EXPECT_TRUE(a.live);
  EXPECT_TRUE(a.ready);
  EXPECT_EQ(a.json,
            "{\"status\":\"ok\",\"live\":true,\"ready\":true,\"shutting_down\":false,\"active_work\":5,"
            "\"components\":{"
            "\"worker\":{\"live\":true,\"ready\":true,\"active_work\":3,\"group\":\"shop\",\"assigned_partitions\":4,"
            "\"joined\":true},"
            "\"launcher\":{\"live\":true,\"ready\":true,\"active_work\":2}}}");
}

TEST(Health, IsNotReadyWhileAComponentIsNotReadyAndSaysWhy) {
  Board board;
  ProbeHandle a = board.Add("worker", [] { return Report{}; });
  ProbeHandle b = board.Add("workflow video.encode",
                            [] { return Report{.ready = false, .reason = "state is loading"}; });
  const Board::Answer answer = board.Check();
  EXPECT_TRUE(answer.live);
  EXPECT_FALSE(answer.ready);
  const auto doc = Parsed(answer);
  EXPECT_EQ(doc.Root().Find("status")->GetString(), "not_ready");
  const auto c = doc.Root().Find("components")->Find("workflow video.encode");
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->Find("ready")->GetBool());
  EXPECT_EQ(c->Find("reason")->GetString(), "state is loading");
}

TEST(Health, IsNotReadyWhileShuttingDownButStaysLive) {
  Board board;
  ProbeHandle h = board.Add("worker", [] { return Report{}; });
  EXPECT_FALSE(board.shutting_down());
  EXPECT_TRUE(board.Check().ready);
  board.SetShuttingDown();
  EXPECT_TRUE(board.shutting_down());
  const Board::Answer a = board.Check();
  EXPECT_TRUE(a.live);
  EXPECT_FALSE(a.ready);
  const auto doc = Parsed(a);
  EXPECT_EQ(doc.Root().Find("status")->GetString(), "shutting_down");
  EXPECT_TRUE(doc.Root().Find("shutting_down")->GetBool());
}

TEST(Health, AComponentThatIsNotLiveMakesTheProcessUnhealthy) {
  Board board;
  ProbeHandle h = board.Add("worker", [] {
    return Report{.live = false, .ready = false, .reason = "the poll loop stopped 42 s ago"};
  });
  const Board::Answer a = board.Check();
  EXPECT_FALSE(a.live);
  EXPECT_FALSE(a.ready);
  const auto doc = Parsed(a);
  EXPECT_EQ(doc.Root().Find("status")->GetString(), "unhealthy");
  EXPECT_EQ(doc.Root().Find("components")->Find("worker")->Find("reason")->GetString(),
            "the poll loop stopped 42 s ago");
}

TEST(Health, AProbeThatThrowsReportsItsComponentNotLiveWithTheReason) {
  Board board;
  ProbeHandle ok = board.Add("launcher", [] { return Report{}; });
  ProbeHandle bad = board.Add("worker", []() -> Report { throw std::runtime_error("lock poisoned"); });
  const Board::Answer a = board.Check();
  EXPECT_FALSE(a.live);
  EXPECT_FALSE(a.ready);
  const auto doc = Parsed(a);
  const auto w = doc.Root().Find("components")->Find("worker");
  EXPECT_FALSE(w->Find("live")->GetBool());
  EXPECT_EQ(w->Find("reason")->GetString(), "its health probe failed: lock poisoned");
  EXPECT_TRUE(doc.Root().Find("components")->Find("launcher")->Find("live")->GetBool());
}

TEST(Health, AProbeThatThrowsSomethingElseIsReportedToo) {
  Board board;
  ProbeHandle bad = board.Add("worker", []() -> Report { throw 42; });
  Board::Answer a;
  ASSERT_NO_THROW(a = board.Check());
  EXPECT_FALSE(a.live);
  EXPECT_THAT(a.json, ::testing::HasSubstr("\"reason\":\"its health probe failed: an unknown exception\""));
}

TEST(Health, ARemovedProbeIsNoLongerAsked) {
  Board board;
  int asked = 0;
  ProbeHandle keep = board.Add("launcher", [] { return Report{}; });
  ProbeHandle h = board.Add("worker", [&] {
    ++asked;
    return Report{.live = false};
  });
  EXPECT_FALSE(board.Check().live);
  ProbeHandle moved = std::move(h);
  EXPECT_FALSE(board.Check().live);
  moved.Reset();
  EXPECT_TRUE(board.Check().live);
  EXPECT_EQ(asked, 2);
  { ProbeHandle scoped = board.Add("scoped", [] { return Report{.ready = false}; }); }
  EXPECT_TRUE(board.Check().ready);
}

TEST(Health, WritesInvalidUtf8InReasonsAndDetailsAsReplacementCharacters) {
  Board board;
  ProbeHandle h = board.Add("worker", [] {
    return Report{.ready = false, .reason = "topic \xff", .details = {{"group", std::string("g\xc3")}}};
  });
  const auto doc = Parsed(board.Check());
  const auto w = doc.Root().Find("components")->Find("worker");
  EXPECT_EQ(w->Find("reason")->GetString(), "topic \xef\xbf\xbd");
  EXPECT_EQ(w->Find("group")->GetString(), "g\xef\xbf\xbd");
}

TEST(Health, ProbesRemovedWhileAnotherThreadChecksNeverRunAfterRemoval) {
  Board board;
  ProbeHandle keep = board.Add("worker", [] { return Report{}; });
  std::atomic<bool> stop{false};
  std::atomic<int> ran_after_removal{0};
  std::thread checker([&] {
    while (!stop.load()) (void)board.Check();
  });
  for (int i = 0; i < 300; ++i) {
    std::atomic<bool> removed{false};
    {
      ProbeHandle h = board.Add("launcher", [&] {
        if (removed.load()) ran_after_removal.fetch_add(1);
        return Report{};
      });
      std::this_thread::yield();
    }
    removed.store(true);
  }
  stop.store(true);
  checker.join();
  EXPECT_EQ(ran_after_removal.load(), 0);
}

}  // namespace
