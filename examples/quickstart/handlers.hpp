#pragma once
// The quickstart's handlers: PlaceOrder -> ChargeCard -> OrderCompleted, then AskForReview some
// time later (a delayed send); and SendDailyReport, which a schedule sends every night
// (schedules.hpp).

#include <chrono>
#include <cstdint>

#include "kbus/handler_registry.hpp"
#include "kbus/log.hpp"
#include "messages.hpp"

namespace shop {

inline constexpr std::int64_t kUnitPriceCents = 1250;

// [handlers]
inline kbus::Outcome PlaceOrderHandler(const PlaceOrder& order, kbus::Context& ctx) {
  if (order.quantity < 1) return kbus::DeadLetter("quantity must be at least 1");
  ctx.Send(ChargeCard{order.order_id, order.quantity * kUnitPriceCents});
  return kbus::Ack();  // ChargeCard leaves only now, after the handler succeeded
}

// How long after a charge the customer is asked for a review (the demo uses seconds).
inline std::chrono::milliseconds review_delay = std::chrono::hours(72);

inline kbus::Outcome ChargeCardHandler(const ChargeCard& charge, kbus::Context& ctx) {
  // A real handler would call a payment API here with ctx.envelope().message_id as the
  // idempotency key, so that a redelivered command does not charge twice.
  ctx.Publish(OrderCompleted{charge.order_id, charge.amount_cents});
  // Delivered by kbus-scheduler at its time, to shop.commands, only if this handler succeeds.
  ctx.Send(AskForReview{charge.order_id}, {.delay = review_delay});
  return kbus::Ack();
}

inline void AskForReviewHandler(const AskForReview& ask, kbus::Context&) {
  kbus::Log(kbus::LogLevel::kInfo, "asking for a review", {{"order_id", ask.order_id}});
}

inline void SendDailyReportHandler(const SendDailyReport& report, kbus::Context&) {
  kbus::Log(kbus::LogLevel::kInfo, "daily report", {{"day", report.day}});
}

inline void RegisterHandlers(kbus::HandlerRegistry& handlers) {
  handlers.Handle<PlaceOrder>(PlaceOrderHandler);
  handlers.Handle<ChargeCard>(ChargeCardHandler);
  handlers.Handle<AskForReview>(AskForReviewHandler);
  handlers.Handle<SendDailyReport>(SendDailyReportHandler);
}
// [handlers]

}  // namespace shop
