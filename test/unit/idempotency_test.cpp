#include "kbus/idempotency.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <initializer_list>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kbus/testing/in_memory_bus.hpp"
#include "kbus/testing/matchers.hpp"
#include "test_messages.hpp"

namespace {

using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A clock the test moves by hand.
struct TestClock {
  std::chrono::steady_clock::time_point now{};
  void Advance(std::chrono::milliseconds d) { now += d; }
  kbus::InMemoryIdempotencyOptions::Clock Fn() {
    return [this] { return now; };
  }
};

struct Fixture : ::testing::Test {
  TestClock clock;
  kbus::InMemoryIdempotencyStore Store(std::size_t max_entries = 100) {
    return kbus::InMemoryIdempotencyStore(
        {.max_entries = max_entries, .lease = 10s, .retention = 1h, .clock = clock.Fn()});
  }
};

using Idempotency = Fixture;

TEST_F(Idempotency, FirstDeliveryRunsTheSideEffectAndADuplicateIsAckedWithoutIt) {
  auto store = Store();
  int runs = 0;
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 1);
  // Another key is another side effect.
  EXPECT_EQ(kbus::RunOnce(store, "other", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 2);
}

TEST_F(Idempotency, ARetryOutcomeReleasesTheKeySoTheNextDeliveryRuns) {
  auto store = Store();
  int runs = 0;
  kbus::Outcome first = kbus::RunOnce(store, "k", [&] {
    ++runs;
    return kbus::Retry(250ms, "payment API unavailable");
  });
  EXPECT_EQ(first.kind(), kbus::Outcome::Kind::kRetry);
  EXPECT_EQ(first.retry_after(), 250ms);
  EXPECT_EQ(first.error(), "payment API unavailable");
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 2);
}

TEST_F(Idempotency, ADeadLetterOutcomeReleasesTheKeyAndIsPassedOn) {
  auto store = Store();
  int runs = 0;
  kbus::Outcome first = kbus::RunOnce(store, "k", [&] {
    ++runs;
    return kbus::DeadLetter("card declined");
  });
  EXPECT_EQ(first.kind(), kbus::Outcome::Kind::kDeadLetter);
  EXPECT_EQ(first.error(), "card declined");
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 2);
}

TEST_F(Idempotency, AThrowingSideEffectReleasesTheKeyAndTheExceptionPropagates) {
  auto store = Store();
  int runs = 0;
  EXPECT_THROW(kbus::RunOnce(store, "k",
                             [&]() -> kbus::Outcome {
                               ++runs;
                               throw std::runtime_error("timeout");
                             }),
               std::runtime_error);
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 2);
}

TEST_F(Idempotency, ADuplicateWhileTheFirstIsRunningGetsRetryAfterTheLease) {
  auto store = Store();
  int runs = 0;
  kbus::Outcome nested = kbus::Ack();
  kbus::Outcome first = kbus::RunOnce(store, "k", [&] {
    ++runs;
    clock.Advance(4s);
    nested = kbus::RunOnce(store, "k", [&] { ++runs; });
  });
  EXPECT_EQ(first.kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(nested.kind(), kbus::Outcome::Kind::kRetry);
  EXPECT_EQ(nested.retry_after(), 6s) << "what is left of the 10 s lease";
  EXPECT_THAT(nested.error(), HasSubstr("another delivery of this message is in progress"));
}

TEST_F(Idempotency, AnExpiredLeaseLetsAnotherDeliveryTakeOverAStuckClaim) {
  auto store = Store();
  // A worker claims the key and crashes before completing it.
  auto stuck = store.TryClaim("k");
  ASSERT_THAT(stuck, IsOk());
  ASSERT_EQ(stuck->state, kbus::ClaimState::kNew);

  int runs = 0;
  clock.Advance(10s - 1ms);
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kRetry);
  EXPECT_EQ(runs, 0);
  clock.Advance(1ms);
  EXPECT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 1);

  // The old owner lost its claim: it can neither complete nor release the new one.
  EXPECT_THAT(store.Complete("k", stuck->token), ErrorIs(kbus::ErrorCode::kNotFound,
                                                         HasSubstr("make the lease longer")));
  EXPECT_THAT(store.Release("k", stuck->token), IsOk());
  auto again = store.TryClaim("k");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->state, kbus::ClaimState::kDone);
}

TEST_F(Idempotency, AnExpiredClaimNobodyTookOverCanStillBeCompleted) {
  auto store = Store();
  auto slow = store.TryClaim("k");
  ASSERT_THAT(slow, IsOk());
  clock.Advance(1min);
  EXPECT_THAT(store.Complete("k", slow->token, "receipt-1"), IsOk());
  auto again = store.TryClaim("k");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->state, kbus::ClaimState::kDone);
  EXPECT_EQ(again->result, "receipt-1");
}

TEST_F(Idempotency, CompleteStoresAResultAndARepeatedCompleteKeepsTheFirst) {
  auto store = Store();
  auto claim = store.TryClaim("k");
  ASSERT_THAT(claim, IsOk());
  EXPECT_THAT(store.Complete("k", claim->token, "receipt-7"), IsOk());
  EXPECT_THAT(store.Complete("k", claim->token, "receipt-8"), IsOk());
  EXPECT_THAT(store.Release("k", claim->token), IsOk()) << "a completed key stays done";
  auto done = store.TryClaim("k");
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->state, kbus::ClaimState::kDone);
  EXPECT_EQ(done->result, "receipt-7");
  EXPECT_THAT(store.Complete("k", "not-a-token"), ErrorIs(kbus::ErrorCode::kNotFound));
}

TEST_F(Idempotency, CompletedKeysAreForgottenAfterTheRetentionPeriod) {
  auto store = Store();
  int runs = 0;
  ASSERT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  clock.Advance(1h - 1ms);
  ASSERT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 1);
  clock.Advance(1ms);
  ASSERT_EQ(kbus::RunOnce(store, "k", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(store.size(), 1u) << "the expired record was dropped, not kept beside the new one";
}

TEST_F(Idempotency, AFullStoreEvictsTheOldestCompletedKeyFirst) {
  auto store = Store(/*max_entries=*/2);
  ASSERT_EQ(kbus::RunOnce(store, "a", [] {}).kind(), kbus::Outcome::Kind::kAck);
  clock.Advance(1s);
  ASSERT_EQ(kbus::RunOnce(store, "b", [] {}).kind(), kbus::Outcome::Kind::kAck);
  auto c = store.TryClaim("c");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->state, kbus::ClaimState::kNew);
  EXPECT_EQ(store.size(), 2u);

  auto b = store.TryClaim("b");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->state, kbus::ClaimState::kDone) << "the newer completed key was kept";
  // "a" was evicted, so it is new again; claiming it evicts "b", never the live claim on "c".
  auto a = store.TryClaim("a");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->state, kbus::ClaimState::kNew);
  auto c_again = store.TryClaim("c");
  ASSERT_THAT(c_again, IsOk());
  EXPECT_EQ(c_again->state, kbus::ClaimState::kInProgress);
}

TEST_F(Idempotency, AStoreFullOfLiveClaimsRefusesWithARetriableError) {
  auto store = Store(/*max_entries=*/2);
  ASSERT_THAT(store.TryClaim("a"), IsOk());
  ASSERT_THAT(store.TryClaim("b"), IsOk());

  auto refused = store.TryClaim("c");
  EXPECT_THAT(refused, ErrorIs(kbus::ErrorCode::kInternal, HasSubstr("raise max_entries")));
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.error().retriable());

  int runs = 0;
  kbus::Outcome outcome = kbus::RunOnce(store, "c", [&] { ++runs; });
  EXPECT_EQ(outcome.kind(), kbus::Outcome::Kind::kRetry);
  EXPECT_THAT(outcome.error(), HasSubstr("idempotency store is full"));
  EXPECT_EQ(runs, 0);

  clock.Advance(10s);  // the claims on "a" and "b" expired: they may now be evicted
  EXPECT_EQ(kbus::RunOnce(store, "c", [&] { ++runs; }).kind(), kbus::Outcome::Kind::kAck);
  EXPECT_EQ(runs, 1);
}

TEST_F(Idempotency, AnEmptyKeyDeadLettersInsteadOfRunningUnguarded) {
  auto store = Store();
  int runs = 0;
  kbus::Outcome outcome = kbus::RunOnce(store, "", [&] { ++runs; });
  EXPECT_EQ(outcome.kind(), kbus::Outcome::Kind::kDeadLetter);
  EXPECT_THAT(outcome.error(), HasSubstr("idempotency key is empty"));
  EXPECT_EQ(runs, 0);
  EXPECT_THAT(store.TryClaim(""), ErrorIs(kbus::ErrorCode::kInvalidArgument));
}

TEST(InMemoryIdempotencyStore, RefusesOptionsThatCannotWork) {
  EXPECT_THROW(kbus::InMemoryIdempotencyStore({.max_entries = 0}), std::invalid_argument);
  EXPECT_THROW(kbus::InMemoryIdempotencyStore({.lease = 0ms}), std::invalid_argument);
  EXPECT_THROW(kbus::InMemoryIdempotencyStore({.retention = -1ms}), std::invalid_argument);
}

TEST(InMemoryIdempotencyStore, EightThreadsRacingOnOneKeyRunTheSideEffectOnce) {
  for (int round = 0; round < 50; ++round) {
    kbus::InMemoryIdempotencyStore store;  // the real clock
    std::atomic<int> runs{0};
    std::atomic<int> acks{0};
    std::latch start(8);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        kbus::Outcome o = kbus::RunOnce(store, "order-1", [&] { runs.fetch_add(1); });
        if (o.kind() == kbus::Outcome::Kind::kAck) acks.fetch_add(1);
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(runs.load(), 1) << "round " << round;
    EXPECT_GE(acks.load(), 1);  // the others saw kDone (Ack) or kInProgress (Retry)
  }
}

// A record with the given headers, seen the way a handler sees it.
struct Delivery {
  std::vector<kbus::HeaderView> headers;
  kbus::InboundRecord record;
  kbus::Envelope envelope;
  Delivery(std::initializer_list<kbus::HeaderView> h) : headers(h) {
    record.topic = "t";
    record.headers = headers;
    envelope = kbus::ParseEnvelope(headers);
  }
  Delivery(const Delivery&) = delete;  // record and envelope point into headers
  Delivery& operator=(const Delivery&) = delete;
};

TEST(IdempotencyKey, PrefersTheHeaderOverTheMessageId) {
  Delivery with({{"kbus-id", "id-1"}, {"kbus-idempotency-key", "charge:order-1"}});
  kbus::Context ctx_with(with.record, with.envelope, 1);
  EXPECT_EQ(kbus::IdempotencyKey(ctx_with), "charge:order-1");

  Delivery without({{"kbus-id", "id-1"}});
  kbus::Context ctx_without(without.record, without.envelope, 1);
  EXPECT_EQ(kbus::IdempotencyKey(ctx_without), "id-1");

  // An empty header is the sender's mistake: it is returned, and RunOnce refuses it.
  Delivery empty({{"kbus-id", "id-1"}, {"kbus-idempotency-key", ""}});
  kbus::Context ctx_empty(empty.record, empty.envelope, 1);
  EXPECT_EQ(kbus::IdempotencyKey(ctx_empty), "");
}

TEST(IdempotencyOnInMemoryBus, ARedeliveredMessageRunsTheSideEffectOnceAndBothDeliveriesAreAcked) {
  kbus::InMemoryIdempotencyStore encodes;
  int started = 0;
  kbus::HandlerRegistry handlers;
  handlers.Handle<kbus_test::EncodeVideo>(
      [&](const kbus_test::EncodeVideo& cmd, kbus::Context& ctx) {
        kbus::Outcome outcome = kbus::RunOnce(encodes, kbus::IdempotencyKey(ctx), [&] {
          ++started;  // e.g. start a transcoding job for cmd.video_id
        });
        // Outside the guard: a duplicate publishes again, with the same message id.
        if (outcome.kind() == kbus::Outcome::Kind::kAck) {
          ctx.Publish(kbus_test::VideoEncoded{cmd.video_id});
        }
        return outcome;
      });
  kbus::testing::InMemoryBus bus(handlers);
  bus.Send(kbus_test::EncodeVideo{.video_id = "v-1"});
  bus.RunUntilIdle();
  // The same record again, as after a crash before its offset was committed.
  kbus::OutgoingRecord first = bus.Records("test.commands").at(0);
  bus.Append(first);
  bus.RunUntilIdle();

  EXPECT_EQ(started, 1);
  EXPECT_EQ(bus.handled(), 2u) << "both deliveries were acked";
  EXPECT_TRUE(bus.DeadLetters().empty());
  const auto& events = bus.Records("test.events");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].FindHeader("kbus-id"), events[1].FindHeader("kbus-id"))
      << "the duplicate event carries the same id, so its consumers can drop it";
}

TEST(IdempotencyOnInMemoryBus, ADeliveryThatThrewIsRetriedByTheBusAndRunsAgain) {
  kbus::InMemoryIdempotencyStore encodes;
  int calls = 0;
  kbus::HandlerRegistry handlers;
  handlers.Handle<kbus_test::EncodeVideo>([&](const kbus_test::EncodeVideo&, kbus::Context& ctx) {
    return kbus::RunOnce(encodes, kbus::IdempotencyKey(ctx), [&] {
      if (++calls == 1) throw std::runtime_error("transcoder unavailable");
    });
  });
  kbus::testing::InMemoryBus bus(handlers);
  bus.Send(kbus_test::EncodeVideo{.video_id = "v-1"});
  EXPECT_EQ(bus.RunUntilIdle(), 2u);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(bus.handled(), 1u);
  EXPECT_TRUE(bus.DeadLetters().empty());
}

}  // namespace
