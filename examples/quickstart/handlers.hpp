#pragma once
// The quickstart's handlers: PlaceOrder -> ChargeCard -> OrderCompleted.

#include <cstdint>

#include "kbus/handler_registry.hpp"
#include "messages.hpp"

namespace shop {

inline constexpr std::int64_t kUnitPriceCents = 1250;

// [handlers]
inline kbus::Outcome PlaceOrderHandler(const PlaceOrder& order, kbus::Context& ctx) {
  if (order.quantity < 1) return kbus::DeadLetter("quantity must be at least 1");
  ctx.Send(ChargeCard{order.order_id, order.quantity * kUnitPriceCents});
  return kbus::Ack();  // ChargeCard leaves only now, after the handler succeeded
}

inline kbus::Outcome ChargeCardHandler(const ChargeCard& charge, kbus::Context& ctx) {
  // A real handler would call a payment API here with ctx.envelope().message_id as the
  // idempotency key, so that a redelivered command does not charge twice.
  ctx.Publish(OrderCompleted{charge.order_id, charge.amount_cents});
  return kbus::Ack();
}

inline void RegisterHandlers(kbus::HandlerRegistry& handlers) {
  handlers.Handle<PlaceOrder>(PlaceOrderHandler);
  handlers.Handle<ChargeCard>(ChargeCardHandler);
}
// [handlers]

}  // namespace shop
