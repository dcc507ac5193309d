#pragma once
// The quickstart's messages: two commands and one event.

#include <cstdint>
#include <string>

#include "kbus/message.hpp"

namespace shop {

struct PlaceOrder {
  std::string order_id;
  std::string item;
  int quantity = 1;
};

struct ChargeCard {
  std::string order_id;
  std::int64_t amount_cents = 0;
};

struct OrderCompleted {
  std::string order_id;
  std::int64_t charged_cents = 0;
};

// Sent with a delay once an order is charged (docs/schedules.md, delayed messages).
struct AskForReview {
  std::string order_id;
};

// Sent every night by a schedule (docs/schedules.md, recurring schedules).
struct SendDailyReport {
  std::string day;  // the tick, ISO 8601 UTC
};

}  // namespace shop

template <>
struct kbus::MessageTraits<shop::PlaceOrder> {
  static constexpr std::string_view kType = "shop.PlaceOrder";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "shop.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("order_id", &shop::PlaceOrder::order_id),
                                               kbus::Field("item", &shop::PlaceOrder::item),
                                               kbus::Field("quantity", &shop::PlaceOrder::quantity));
};

template <>
struct kbus::MessageTraits<shop::ChargeCard> {
  static constexpr std::string_view kType = "shop.ChargeCard";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "shop.commands";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("order_id", &shop::ChargeCard::order_id),
                   kbus::Field("amount_cents", &shop::ChargeCard::amount_cents));
};

template <>
struct kbus::MessageTraits<shop::OrderCompleted> {
  static constexpr std::string_view kType = "shop.OrderCompleted";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "shop.events";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("order_id", &shop::OrderCompleted::order_id),
                   kbus::Field("charged_cents", &shop::OrderCompleted::charged_cents));
};

template <>
struct kbus::MessageTraits<shop::AskForReview> {
  static constexpr std::string_view kType = "shop.AskForReview";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "shop.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("order_id", &shop::AskForReview::order_id));
};

template <>
struct kbus::MessageTraits<shop::SendDailyReport> {
  static constexpr std::string_view kType = "shop.SendDailyReport";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "shop.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("day", &shop::SendDailyReport::day));
};
