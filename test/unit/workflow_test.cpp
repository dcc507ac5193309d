// The workflow engine through its test kit: correlation, re-keying, not-found policies,
// dedupe and outbox re-sends, timeouts, completion and retention, upgrades, failures.

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "kbus/dispatcher.hpp"
#include "kbus/workflows/test_kit.hpp"

namespace {

using namespace std::chrono_literals;
using kbus::workflows::NotFound;
using kbus::workflows::On;
using kbus::workflows::Timeout;
using kbus::workflows::Workflow;
using kbus::workflows::WorkflowContext;
using kbus::workflows::WorkflowOptions;
using kbus::workflows::WorkflowTestKit;

struct PlaceOrder {
  std::string order_id;
  int amount = 0;
};
struct ChargeCard {
  std::string order_id;
  int amount = 0;
};
struct CardCharged {  // correlated by its order_id
  std::string order_id;
  bool ok = true;
};
struct Shipped {  // correlated by the kbus-workflow-id header
  std::string tracking;
};
struct OrderDone {
  std::string order_id;
  std::string outcome;
};

struct Ping {};  // handled, changes nothing

struct Order {
  std::string phase;
  int amount = 0;
  int charges = 0;
  std::string reminder;
  std::vector<std::string> log;
};

}  // namespace

template <>
struct kbus::MessageTraits<PlaceOrder> {
  static constexpr std::string_view kType = "shop.PlaceOrder";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "shop.commands";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("order_id", &PlaceOrder::order_id), kbus::Field("amount", &PlaceOrder::amount));
};
template <>
struct kbus::MessageTraits<ChargeCard> {
  static constexpr std::string_view kType = "shop.ChargeCard";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "shop.payments";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("order_id", &ChargeCard::order_id), kbus::Field("amount", &ChargeCard::amount));
};
template <>
struct kbus::MessageTraits<CardCharged> {
  static constexpr std::string_view kType = "shop.CardCharged";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "shop.events";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("order_id", &CardCharged::order_id), kbus::Field("ok", &CardCharged::ok));
};
template <>
struct kbus::MessageTraits<Shipped> {
  static constexpr std::string_view kType = "shop.Shipped";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "shop.events";
  static constexpr auto kFields = kbus::Fields(kbus::Field("tracking", &Shipped::tracking));
};
template <>
struct kbus::MessageTraits<OrderDone> {
  static constexpr std::string_view kType = "shop.OrderDone";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "shop.done";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("order_id", &OrderDone::order_id), kbus::Field("outcome", &OrderDone::outcome));
};
template <>
struct kbus::MessageTraits<Ping> {
  static constexpr std::string_view kType = "shop.Ping";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "shop.events";
  static void Encode(const Ping&, kbus::JsonWriter& w) {
    w.StartObject();
    w.EndObject();
  }
  static kbus::Result<Ping> Decode(const kbus::JsonValue&) { return Ping{}; }
};
template <>
struct kbus::JsonTraits<Order> {
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("phase", &Order::phase), kbus::Field("amount", &Order::amount),
      kbus::Field("charges", &Order::charges), kbus::Field("reminder", &Order::reminder),
      kbus::Field("log", &Order::log));
};

namespace {

struct Options {
  NotFound charged_not_found = NotFound::kLog;
  WorkflowOptions workflow;
  bool throw_on_ship = false;
};

// Place -> charge -> (reminder timeout) -> charged -> shipped -> done. A failed charge
// dead-letters the order.
Workflow<Order> OrderWorkflow(const Options& o = {}) {
  Workflow<Order> wf("shop.order", o.workflow);
  wf.StartedBy<PlaceOrder>(
      [](const PlaceOrder& m) { return m.order_id; },
      [](const PlaceOrder& m, Order& s, WorkflowContext& ctx) {
        s.phase = "charging";
        s.amount = m.amount;
        s.log.push_back("placed run " + std::to_string(ctx.run()));
        ctx.Send(ChargeCard{m.order_id, m.amount});
        s.reminder = ctx.RequestTimeout("remind", 10min, R"({"n":1})");
      });
  wf.Handles<CardCharged>(
      [](const CardCharged& e, Order& s, WorkflowContext& ctx) {
        ++s.charges;
        ctx.CancelTimeout(s.reminder);
        if (!e.ok) {
          ctx.Publish(OrderDone{ctx.workflow_id(), "payment-failed"});
          ctx.DeadLetter("payment-failed", "the card was declined", s.charges, {{"kbus-dlq-extra", "x"}});
          return;
        }
        s.phase = "shipping";
      },
      On<CardCharged>{[](const CardCharged& e) { return e.order_id; }, o.charged_not_found});
  wf.Handles<Shipped>([throw_on_ship = o.throw_on_ship](const Shipped& e, Order& s, WorkflowContext& ctx) {
    if (throw_on_ship) throw std::runtime_error("ship handler broke");
    s.phase = "done";
    s.log.push_back("shipped " + e.tracking);
    ctx.Publish(OrderDone{ctx.workflow_id(), "shipped"});
    ctx.Complete();
  });
  wf.Handles<Ping>([](const Ping&, Order&, WorkflowContext&) {});
  wf.OnTimeout("remind", [](const Timeout& t, Order& s, WorkflowContext&) {
    s.log.push_back("reminded " + t.payload);
  });
  return wf;
}

kbus::SendOptions ToWorkflow(const std::string& id) {
  kbus::SendOptions o;
  o.workflow_id = id;
  return o;
}

TEST(Workflow, AStarterIsRekeyedIntoTheInputTopicStartsAnInstanceAndSendsStickyMessages) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kbus::SendOptions options;
  options.key = "some-other-key";
  kit.Send(PlaceOrder{"o-1", 30}, options);

  ASSERT_EQ(kit.Status("o-1"), "running");
  EXPECT_EQ(kit.State("o-1")->phase, "charging");
  EXPECT_EQ(kit.State("o-1")->amount, 30);
  EXPECT_EQ(kit.Stats().rekeyed, 1u);
  EXPECT_EQ(kit.Stats().started, 1u);
  const auto& input = kit.Records("shop.order.in");
  ASSERT_EQ(input.size(), 1u) << "the starter was forwarded into the input topic";
  EXPECT_EQ(input[0].key, "o-1");
  EXPECT_EQ(input[0].FindHeader(kbus::header::kWorkflowId), "o-1");

  const auto& charges = kit.Records("shop.payments");
  ASSERT_EQ(charges.size(), 1u);
  EXPECT_EQ(charges[0].key, "o-1") << "keyed by the workflow id";
  EXPECT_EQ(charges[0].FindHeader(kbus::header::kWorkflowId), "o-1");
  EXPECT_EQ(charges[0].FindHeader(kbus::header::kCorrelationId),
            kit.Records("shop.commands")[0].FindHeader(kbus::header::kCorrelationId))
      << "the correlation id is sticky";
  EXPECT_EQ(charges[0].FindHeader(kbus::header::kCausationId), input[0].FindHeader(kbus::header::kId));

  const auto stored = kit.store().Get(0, "o-1");
  ASSERT_TRUE(stored.has_value()) << "the state record was written";
  EXPECT_NE(stored->find("\"version\":1"), std::string::npos);
  EXPECT_NE(stored->find("\"charging\""), std::string::npos);
}

TEST(Workflow, MessagesCorrelateByKeyExtractorAndByWorkflowIdHeader) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.Send(PlaceOrder{"o-1", 30});
  kit.Send(PlaceOrder{"o-2", 40});
  kit.Send(CardCharged{"o-2", true});
  EXPECT_EQ(kit.State("o-2")->phase, "shipping");
  EXPECT_EQ(kit.State("o-1")->phase, "charging") << "o-1 untouched";

  kit.Send(Shipped{"T-2"}, ToWorkflow("o-2"));
  EXPECT_EQ(kit.Status("o-2"), "completed");
  EXPECT_EQ(kit.State("o-2")->log.back(), "shipped T-2");
  ASSERT_EQ(kit.Sent<OrderDone>().size(), 1u);
  EXPECT_EQ(kit.Sent<OrderDone>()[0].outcome, "shipped");

  kit.Send(Shipped{"T-none"});  // no workflow id at all: no instance can ever match it
  EXPECT_EQ(kit.Stats().no_id, 1u);
  ASSERT_EQ(kit.DeadLetters().size(), 1u);
  EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "workflow-id-missing");
}

TEST(Workflow, AnEmptyWorkflowIdIsDeadLetteredAndCountedWhateverTheNotFoundPolicy) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.Send(PlaceOrder{"", 30});        // a starter whose key extractor gives ""
  kit.Send(CardCharged{"", true});     // a follow-up keyed by an empty field (policy: log)
  EXPECT_EQ(kit.Stats().no_id, 2u);
  EXPECT_EQ(kit.Stats().started, 0u);
  ASSERT_EQ(kit.DeadLetters().size(), 2u);
  for (const auto& dlq : kit.DeadLetters()) {
    EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqReason), "workflow-id-missing");
    EXPECT_NE(dlq.FindHeader(kbus::header::kDlqError)->find("empty workflow id"), std::string::npos);
  }
}

TEST(Workflow, NotFoundPoliciesLogRetryOrDeadLetter) {
  {
    WorkflowTestKit<Order> kit(OrderWorkflow());
    kit.Send(CardCharged{"ghost", true});
    EXPECT_EQ(kit.Stats().not_found, 1u);
    EXPECT_TRUE(kit.DeadLetters().empty());
    EXPECT_EQ(kit.Status("ghost"), "") << "a non-starter never creates an instance";
  }
  {
    Options o;
    o.charged_not_found = NotFound::kRetry;
    WorkflowTestKit<Order> kit(OrderWorkflow(o));
    kit.Send(CardCharged{"ghost", true});
    EXPECT_EQ(kit.Stats().not_found, 5u) << "delivered again up to max deliveries";
    ASSERT_EQ(kit.DeadLetters().size(), 1u);
    EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "handler-error");
  }
  {
    Options o;
    o.charged_not_found = NotFound::kDeadLetter;
    WorkflowTestKit<Order> kit(OrderWorkflow(o));
    kit.Send(CardCharged{"ghost", true});
    ASSERT_EQ(kit.DeadLetters().size(), 1u);
    EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "workflow-not-found");
  }
}

TEST(Workflow, ARedeliveredMessageRunsOnceAndOnlyResendsItsOutgoingMessages) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.Send(PlaceOrder{"o-1", 30});
  const kbus::OutgoingRecord placed = kit.Records("shop.order.in").at(0);
  const auto version = kit.Instance("o-1")->version;

  kit.Append(placed);  // the same record again: a redelivery after a crash before the commit
  EXPECT_EQ(kit.Instance("o-1")->version, version) << "no second run, no second write";
  EXPECT_EQ(kit.State("o-1")->log.size(), 1u);
  EXPECT_EQ(kit.Stats().duplicates, 1u);
  const auto& charges = kit.Records("shop.payments");
  ASSERT_EQ(charges.size(), 2u) << "the outbox is sent again";
  EXPECT_EQ(charges[0].FindHeader(kbus::header::kId), charges[1].FindHeader(kbus::header::kId))
      << "with the same message ids, so receivers can drop the copy";

  kit.Send(CardCharged{"o-1", true});
  kit.Append(placed);  // an older message again: its outbox was sent before the next one ran
  EXPECT_EQ(kit.Records("shop.payments").size(), 2u);
  EXPECT_EQ(kit.State("o-1")->phase, "shipping");
}

TEST(Workflow, TimeoutsFireThroughTheHandlerPathAndCanBeCancelled) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.Send(PlaceOrder{"o-1", 30});
  ASSERT_EQ(kit.Timeouts("o-1").size(), 1u);
  EXPECT_EQ(kit.Timeouts("o-1")[0].name, "remind");
  EXPECT_EQ(kit.Timeouts("o-1")[0].due_ms, kit.NowMs() + 600000);

  kit.Advance(9min);
  EXPECT_EQ(kit.State("o-1")->log.size(), 1u) << "not due yet";
  kit.Advance(1min);
  EXPECT_EQ(kit.State("o-1")->log.back(), R"(reminded {"n":1})");
  EXPECT_TRUE(kit.Timeouts("o-1").empty());
  EXPECT_EQ(kit.Stats().timeouts_fired, 1u);
  ASSERT_EQ(kit.Records("shop.order.in").size(), 2u) << "the firing went through the input topic";
  EXPECT_EQ(kit.Records("shop.order.in")[1].FindHeader(kbus::header::kType), "shop.order.timeout");

  kit.Send(PlaceOrder{"o-2", 30});
  kit.Send(CardCharged{"o-2", true});  // cancels the reminder
  EXPECT_TRUE(kit.Timeouts("o-2").empty());
  kit.Advance(1h);
  EXPECT_EQ(kit.State("o-2")->log.size(), 1u) << "a cancelled timeout never fires";

  // A duplicate firing (a timer that fired twice across a restart) runs nothing.
  kit.Send(PlaceOrder{"o-3", 30});
  const std::string id = kit.Timeouts("o-3")[0].id;
  kit.Advance(10min);
  EXPECT_EQ(kit.State("o-3")->log.size(), 2u);
  auto again = kit.Records("shop.order.in").back();
  again.headers.erase(std::remove_if(again.headers.begin(), again.headers.end(),
                                     [](const auto& h) { return h.name == kbus::header::kId; }),
                      again.headers.end());
  again.headers.push_back({std::string(kbus::header::kId), "another-firing"});
  kit.Append(again);
  EXPECT_EQ(kit.State("o-3")->log.size(), 2u);
}

TEST(Workflow, CompletionDropsTimeoutsCountsLateMessagesAndARedeliveredStarterDoesNotRestart) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.Send(PlaceOrder{"o-1", 30});
  kit.Send(CardCharged{"o-1", true});
  kit.Send(Shipped{"T-1"}, ToWorkflow("o-1"));
  ASSERT_EQ(kit.Status("o-1"), "completed");
  ASSERT_EQ(kit.Timeouts("o-1").size(), 1u) << "only the retention timer is left";
  EXPECT_EQ(kit.Timeouts("o-1")[0].name, "kbus.expire");

  kit.Send(CardCharged{"o-1", true});
  EXPECT_EQ(kit.Stats().late, 1u);
  EXPECT_EQ(kit.State("o-1")->charges, 1);

  kit.Append(kit.Records("shop.order.in").at(0));  // the first starter again
  EXPECT_EQ(kit.Status("o-1"), "completed");
  EXPECT_EQ(kit.Instance("o-1")->run, 1);

  kit.Send(PlaceOrder{"o-1", 99});  // a new message: a new run
  EXPECT_EQ(kit.Status("o-1"), "running");
  EXPECT_EQ(kit.Instance("o-1")->run, 2);
  EXPECT_EQ(kit.State("o-1")->amount, 99);
  EXPECT_EQ(kit.State("o-1")->log, std::vector<std::string>{"placed run 2"}) << "a fresh state";
}

TEST(Workflow, AFinishedInstanceIsRemovedAfterItsRetention) {
  Options o;
  o.workflow.completed_retention = 1h;
  WorkflowTestKit<Order> kit(OrderWorkflow(o));
  kit.Send(PlaceOrder{"o-1", 30});
  kit.Send(CardCharged{"o-1", true});
  kit.Send(Shipped{"T-1"}, ToWorkflow("o-1"));
  kit.Advance(59min);
  EXPECT_EQ(kit.Status("o-1"), "completed");
  kit.Advance(1min);
  EXPECT_EQ(kit.Status("o-1"), "");
  EXPECT_FALSE(kit.store().Get(0, "o-1").has_value()) << "a tombstone removed the record";
  EXPECT_EQ(kit.Stats().expired, 1u);
  kit.Send(CardCharged{"o-1", true});
  EXPECT_EQ(kit.Stats().not_found, 1u);
}

TEST(Workflow, DeadLetterSendsTheStarterToTheDlqWithItsHeadersAndFailsTheRun) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  // The payment service's reply, named after the ChargeCard it answers (as a launcher names
  // its events after the launch).
  auto reply_to = [&](const kbus::OutgoingRecord& charge, bool ok) {
    std::vector<kbus::HeaderView> views;
    for (const auto& h : charge.headers) views.push_back({h.name, h.value});
    const kbus::Envelope parent = kbus::ParseEnvelope(views);
    return kbus::BuildRecord("shop.CardCharged", kbus::MessageKind::kEvent, "shop.events",
                             R"({"order_id":"o-1","ok":)" + std::string(ok ? "true" : "false") + "}", {}, &parent, 0);
  };
  kit.Send(PlaceOrder{"o-1", 30});
  kit.Append(reply_to(kit.Records("shop.payments").at(0), false));
  EXPECT_EQ(kit.Status("o-1"), "failed");
  ASSERT_EQ(kit.DeadLetters().size(), 1u);
  const auto& dlq = kit.DeadLetters()[0];
  const auto& starter = kit.Records("shop.order.in").at(0);
  EXPECT_EQ(dlq.payload, starter.payload) << "the original command, unchanged";
  EXPECT_EQ(dlq.key, "o-1");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kType), "shop.PlaceOrder");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kId), starter.FindHeader(kbus::header::kId));
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqReason), "payment-failed");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqError), "the card was declined");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqAttempts), "1");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqTopic), "shop.order.in");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqGroup), "test");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-workflow"), "shop.order");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-extra"), "x");
  ASSERT_EQ(kit.Sent<OrderDone>().size(), 1u);
  EXPECT_EQ(kit.Stats().failed, 1u);

  // A redriven copy of the command is a new message: it starts a new run.
  const std::string command_id(*starter.FindHeader(kbus::header::kId));  // before appends move it
  kbus::OutgoingRecord redriven = dlq;
  redriven.topic = "shop.order.in";
  redriven.headers.push_back({std::string(kbus::header::kRedriveOf), "test.dlq:0:0"});
  kit.Append(redriven);
  EXPECT_EQ(kit.Status("o-1"), "running");
  EXPECT_EQ(kit.Instance("o-1")->run, 2);

  // Run 2 goes on to its end. Its ChargeCard is not run 1's (a copy keeps its message id, but
  // what run 2 sends is named after the redrive), so a reply named after it, as a launcher
  // names its events, is not taken for run 1's reply and dropped.
  const auto& charges = kit.Records("shop.payments");
  ASSERT_EQ(charges.size(), 2u);
  EXPECT_NE(charges[0].FindHeader(kbus::header::kId), charges[1].FindHeader(kbus::header::kId));
  EXPECT_EQ(charges[1].FindHeader(kbus::header::kCausationId), command_id)
      << "the cause is still the command, by its own id";
  kit.Append(reply_to(charges[1], true));
  EXPECT_EQ(kit.State("o-1")->phase, "shipping") << "run 2's reply was handled";
}

TEST(Workflow, AThrowingHandlerLeavesTheStateAsItWasAndIsRetried) {
  Options o;
  o.throw_on_ship = true;
  WorkflowTestKit<Order> kit(OrderWorkflow(o));
  kit.Send(PlaceOrder{"o-1", 30});
  kit.Send(CardCharged{"o-1", true});
  const auto version = kit.Instance("o-1")->version;
  kit.Send(Shipped{"T-1"}, ToWorkflow("o-1"));
  EXPECT_EQ(kit.Instance("o-1")->version, version);
  EXPECT_EQ(kit.State("o-1")->phase, "shipping");
  EXPECT_TRUE(kit.Sent<OrderDone>().empty()) << "a failed attempt sends nothing";
  ASSERT_EQ(kit.DeadLetters().size(), 1u) << "after max deliveries";
  EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "handler-error");
}

TEST(Workflow, AFailedStateWriteIsRetriedAndSendsNothingUntilItSucceeds) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.store().FailWrites(2);
  kit.Send(PlaceOrder{"o-1", 30});
  EXPECT_EQ(kit.Status("o-1"), "running");
  EXPECT_EQ(kit.Records("shop.payments").size(), 1u) << "sent once, after the write that worked";
  EXPECT_EQ(kit.store().writes(), 1u);
}

TEST(Workflow, AHandlerThatChangesNothingWritesNothing) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kit.Send(PlaceOrder{"o-1", 30});
  const auto writes = kit.store().writes();
  kit.Send(Ping{}, ToWorkflow("o-1"));
  EXPECT_EQ(kit.store().writes(), writes);
  EXPECT_EQ(kit.Stats().unchanged, 1u);
  kit.Send(PlaceOrder{"o-1", 30});  // a second starter for a running instance: handled by it
  EXPECT_EQ(kit.store().writes(), writes + 1) << "that one changes the log";
  EXPECT_EQ(kit.State("o-1")->log.size(), 2u);
}

TEST(Workflow, AStateAboveItsBoundIsRefusedLoudly) {
  Options o;
  o.workflow.max_state_bytes = 600;
  WorkflowTestKit<Order> kit(OrderWorkflow(o));
  kit.Send(PlaceOrder{"o-1", 30});
  EXPECT_EQ(kit.Status("o-1"), "");
  ASSERT_EQ(kit.DeadLetters().size(), 1u);
  EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "state-too-large");
  EXPECT_NE(std::string(*kit.DeadLetters()[0].FindHeader(kbus::header::kDlqError)).find("max_state_bytes"),
            std::string::npos);
}

// Schema 1 stored the amount as a string; schema 2 is Order.
struct OrderV1 {
  std::string phase;
  std::string amount;
};

}  // namespace

template <>
struct kbus::JsonTraits<OrderV1> {
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("phase", &OrderV1::phase), kbus::Field("amount", &OrderV1::amount));
};

namespace {

TEST(Workflow, AnOldStateIsUpgradedOnLoadAndWrittenWithTheNewSchema) {
  kbus::workflows::MemoryStateStore store;
  {
    // What a schema-1 program left behind.
    Workflow<OrderV1> v1("shop.order");
    v1.StartedBy<PlaceOrder>([](const PlaceOrder& m) { return m.order_id; },
                             [](const PlaceOrder& m, OrderV1& s, WorkflowContext&) {
                               s.phase = "charging";
                               s.amount = std::to_string(m.amount);
                             });
    kbus::workflows::TestKitOptions options;
    options.store = &store;
    WorkflowTestKit<OrderV1> kit(v1, options);
    kit.Send(PlaceOrder{"o-1", 42});
    ASSERT_EQ(kit.State("o-1")->amount, "42");
  }
  Workflow<Order> wf("shop.order", {}, 2);
  wf.StartedBy<PlaceOrder>([](const PlaceOrder& m) { return m.order_id; },
                           [](const PlaceOrder&, Order&, WorkflowContext&) {});
  wf.Handles<CardCharged>([](const CardCharged&, Order& s, WorkflowContext&) { s.phase = "shipping"; },
                          On<CardCharged>{[](const CardCharged& e) { return e.order_id; }});
  wf.Upgrade<OrderV1, Order>(1, [](OrderV1 old) {
    Order s;
    s.phase = old.phase;
    s.amount = std::stoi(old.amount);
    return s;
  });
  kbus::workflows::TestKitOptions options;
  options.store = &store;
  WorkflowTestKit<Order> kit(wf, options);
  EXPECT_EQ(kit.Instance("o-1")->schema, 1) << "loaded as stored";
  kit.Send(CardCharged{"o-1", true});
  ASSERT_EQ(kit.Instance("o-1")->schema, 2);
  EXPECT_EQ(kit.State("o-1")->amount, 42);
  EXPECT_EQ(kit.State("o-1")->phase, "shipping");
  EXPECT_NE(store.Get(0, "o-1")->find("\"schema\":2"), std::string::npos);
}

TEST(Workflow, ADeclarationWithoutAStarterOrWithATypeTwiceIsRefused) {
  Workflow<Order> none("x");
  none.Handles<Shipped>([](const Shipped&, Order&, WorkflowContext&) {});
  kbus::workflows::MemoryStateStore store;
  kbus::workflows::HostConfig config;
  config.group = "g";
  EXPECT_THROW(kbus::workflows::WorkflowHost(none, config, store), std::invalid_argument);

  Workflow<Order> twice("y");
  twice.StartedBy<PlaceOrder>([](const PlaceOrder& m) { return m.order_id; },
                              [](const PlaceOrder&, Order&, WorkflowContext&) {});
  twice.Handles<PlaceOrder>([](const PlaceOrder&, Order&, WorkflowContext&) {});
  EXPECT_THROW(kbus::workflows::WorkflowHost(twice, config, store), std::invalid_argument);

  kbus::workflows::HostConfig no_group;
  EXPECT_THROW(kbus::workflows::WorkflowHost(OrderWorkflow(), no_group, store), std::invalid_argument);
}

TEST(Workflow, AMalformedPayloadGoesToTheDlqAsADecodeError) {
  WorkflowTestKit<Order> kit(OrderWorkflow());
  kbus::OutgoingRecord bad = kbus::BuildRecord(PlaceOrder{"o-1", 1});
  bad.payload = R"({"order_id": 7})";
  kit.Append(bad);
  ASSERT_EQ(kit.DeadLetters().size(), 1u);
  EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "decode-error");
  EXPECT_EQ(kit.Status("o-1"), "");
}

}  // namespace

namespace {

TEST(Workflow, AnAbandonedDeliveryWritesNoState) {
  kbus::workflows::MemoryStateStore store;
  kbus::workflows::HostConfig config;
  config.group = "g";
  kbus::workflows::WorkflowHost host(OrderWorkflow(), config, store);
  kbus::HandlerRegistry registry;
  host.Register(registry);
  host.OnAssigned({0});
  kbus::OutgoingRecord out = kbus::BuildRecord(PlaceOrder{"o-1", 5}, {.topic = "shop.order.in", .key = "o-1"});
  std::vector<kbus::HeaderView> headers;
  for (const auto& h : out.headers) headers.push_back({h.name, h.value});
  kbus::InboundRecord in;
  in.topic = out.topic;
  in.partition = 0;
  in.offset = 0;
  in.key = out.key;
  in.payload = out.payload;
  in.headers = headers;
  kbus::Dispatcher dispatcher(registry);

  kbus::Visibility abandoned;
  abandoned.Cancel();
  EXPECT_EQ(dispatcher.Dispatch(in, 1, &abandoned).kind, kbus::DispatchResult::Kind::kRetry);
  EXPECT_EQ(store.writes(), 0u);

  kbus::Visibility live;
  const auto r = dispatcher.Dispatch(in, 2, &live);
  EXPECT_EQ(r.kind, kbus::DispatchResult::Kind::kAck);
  EXPECT_EQ(store.writes(), 1u);
  EXPECT_EQ(r.outgoing.size(), 1u) << "ChargeCard";
}

}  // namespace
