#pragma once
// HandlerRegistry: which handler runs for which message type read from which topic. Handlers
// are registered at start-up as routes keyed by the stable type name and the topic they read
// (each lane's topic counts): one type may have routes on several topics (two workflows that
// both take the launcher's events, each on its own input topic), but registering the same type
// on the same topic twice is a programming error and throws std::logic_error at once rather than
// silently picking one.
//
// Thread safety: register everything before a worker starts; lookups are then read-only and
// safe from any thread.

#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/context.hpp"
#include "kbus/json.hpp"
#include "kbus/message.hpp"
#include "kbus/outcome.hpp"
#include "kbus/slots.hpp"

namespace kbus {

// How deliveries of one message type are timed out and retried. Unset fields take the worker's
// settings (WorkerConfig: max_deliveries, retry_backoff_*, visibility_timeout, retry_tiers,
// local_attempts).
struct DeliveryPolicy {
  std::optional<int> max_deliveries;  // >= 1; then the dead-letter topic
  std::optional<std::chrono::milliseconds> retry_backoff_initial;
  std::optional<std::chrono::milliseconds> retry_backoff_max;
  // How long one delivery may run before it is abandoned and delivered again (> 0).
  std::optional<std::chrono::milliseconds> visibility_timeout;
  // Delay tiers for retries after `local_attempts` deliveries (see WorkerConfig::retry_tiers).
  // An empty vector: every retry of this type happens in the worker.
  std::optional<std::vector<std::chrono::milliseconds>> retry_tiers;
  std::optional<int> local_attempts;  // >= 1
  // Exceptions that retrying cannot fix (a bad argument, a permission refused): when this returns
  // true for what a handler threw, the message goes to the dead-letter topic at once, with
  // reason "non-retryable". Without it, every exception is retried.
  std::function<bool(const std::exception&)> non_retryable;
  // Bounded work that outlives the handler (kbus/slots.hpp): a delivery runs only with a free
  // slot, and a partition whose next record finds none is paused until one is given back.
  std::shared_ptr<Slots> slots;
};

// A priority lane: a topic a message type is read from, and its weight. While several lanes
// have records ready, a worker starts them in proportion to their weights (of every 9 records
// started from lanes weighted 8 and 1, 8 come from the first), so a heavy lane is preferred and
// a light one is never starved (docs/delivery.md, "Priority lanes"). A record goes into a lane
// by being sent to its topic: SendOptions{.topic = "video.encode.urgent"}.
struct Lane {
  std::string topic;
  int weight = 1;  // >= 1
};

struct HandlerOptions {
  std::string topic;  // default: the message type's kTopic
  // Instead of `topic`: the type is read from every lane's topic. Topics without a lane weigh 1.
  std::vector<Lane> lanes;
  DeliveryPolicy policy;
};

class HandlerRegistry {
 public:
  // Decodes the payload and runs the typed handler.
  using Invoker = std::function<Outcome(const JsonValue& payload, Context& ctx)>;

  struct Route {
    std::string type;
    MessageKind kind;
    std::string topic;
    Invoker invoke;
    DeliveryPolicy policy;
    // When not empty, the type is read from these topics instead (HandlerOptions::lanes), and
    // `topic` is the first of them.
    std::vector<Lane> lanes;
  };

  // Registers `fn` for messages of type T. `fn` is callable as
  //   Outcome(const T&, Context&)   or   void(const T&, Context&)   (void means Ack).
  // Throws std::logic_error when T's type name already has a handler on one of the topics this
  // route reads (its topic, or any of its lanes), when the policy is
  // impossible (max_deliveries < 1, a negative backoff, initial above max), or when the lanes
  // are (both `topic` and `lanes` set, a lane without a topic, a weight below 1, a topic listed
  // twice, or a topic that another type's lanes weigh differently).
  template <Message T, class Fn>
  void Handle(Fn fn, HandlerOptions options = {}) {
    using Traits = MessageTraits<T>;
    Invoker invoke = [fn = std::move(fn)](const JsonValue& payload, Context& ctx) -> Outcome {
      Result<T> decoded = FromJsonValue<T>(payload);
      if (!decoded.ok()) return Outcome::DeadLetterFor("decode-error", decoded.error().message());
      if constexpr (std::is_void_v<std::invoke_result_t<Fn&, const T&, Context&>>) {
        fn(decoded.value(), ctx);
        return Ack();
      } else {
        return fn(decoded.value(), ctx);
      }
    };
    if (!options.topic.empty() && !options.lanes.empty()) {
      throw std::logic_error("kbus: message type '" + std::string(Traits::kType) +
                             "' sets both HandlerOptions::topic and ::lanes: list the topic as a lane");
    }
    std::string topic = !options.lanes.empty() ? options.lanes.front().topic
                        : options.topic.empty() ? std::string(Traits::kTopic)
                                                : options.topic;
    Add(Route{std::string(Traits::kType), Traits::kKind, std::move(topic), std::move(invoke),
              options.policy, std::move(options.lanes)});
  }

  // Registers a route built at run time, for generic code that knows a type only by its name
  // (workflow hosts, bridges). The same checks and errors as Handle.
  void AddRoute(Route route) { Add(std::move(route)); }

  // The route for a record of `type` read from `topic` (pass a retry tier's copy's original
  // topic, kbus-retry-original-topic): the type's route on that topic; failing that, the type's
  // only route, whatever the topic (a workflow's re-keyed copies arrive on its input topic, not
  // on the route's). nullptr when the type has no route, or several and none on `topic`
  // (TopicsOf names theirs).
  const Route* Find(std::string_view type, std::string_view topic) const;
  // The type's only route, or nullptr when it has none or several: for code that knows no
  // topic. Prefer Find(type, topic).
  const Route* Find(std::string_view type) const;
  // The topics the routes of `type` read (lanes included), sorted; empty for an unknown type.
  std::vector<std::string> TopicsOf(std::string_view type) const;
  // Every registered route, ordered by type name, then in the order they were registered.
  std::vector<const Route*> Routes() const;
  // Every topic a handler is registered on (lanes included), sorted and without repeats.
  std::vector<std::string> Topics() const;
  // Every topic some type reads as a lane, with its weight, sorted by topic.
  std::vector<Lane> Lanes() const;
  // True when some command handler reads `topic`: unknown types there are dead-lettered, while
  // on a topic with only event handlers they are skipped (other groups may want them).
  bool IsCommandTopic(std::string_view topic) const;
  // The number of routes (a type registered on two topics counts twice).
  std::size_t size() const { return size_; }

 private:
  void Add(Route route);

  // By type, in the order registered; a deque, so that a Route* stays valid as more are added.
  std::map<std::string, std::deque<Route>, std::less<>> routes_;
  std::size_t size_ = 0;
  std::set<std::string, std::less<>> command_topics_;
  std::map<std::string, int, std::less<>> lane_weights_;  // by topic
};

}  // namespace kbus
