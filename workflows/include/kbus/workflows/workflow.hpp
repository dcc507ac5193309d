#pragma once
// Declaring a workflow (a saga): a stable name, a state struct, the messages that start it, the
// messages and timeouts it reacts to. docs/workflows.md has the guarantees and every default.
//
//   kbus::workflows::Workflow<Order> wf("shop.order");
//   wf.StartedBy<PlaceOrder>([](const PlaceOrder& m) { return m.order_id; },
//                            [](const PlaceOrder& m, Order& s, WorkflowContext& ctx) { ... });
//   wf.Handles<CardCharged>([](const CardCharged& e, Order& s, WorkflowContext& ctx) { ... });
//   wf.OnTimeout("payment-overdue", [](const Timeout& t, Order& s, WorkflowContext& ctx) { ... });
//
// Handlers get the state and a WorkflowContext, and do no I/O of their own: what they send,
// the timeouts they set and the state they leave are written together, once the handler
// returns. An exception thrown by a handler leaves the state as it was, and the message is
// retried by the bus (its delivery policy). The state struct is JSON-capable (kbus/codec.hpp).
//
// Thread safety: declare everything before the workflow is hosted; it is read-only afterwards.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/context.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handler_registry.hpp"
#include "kbus/message.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"

namespace kbus::workflows {

// What happens to a message that finds no running instance of the workflow.
enum class NotFound {
  kLog,         // logged and counted, then committed (the default; never silent)
  kRetry,       // delivered again later, for replies that may overtake their starter; bounded
                // by the delivery policy's max deliveries, then the dead-letter topic
  kDeadLetter,  // to the host's dead-letter topic, reason "workflow-not-found"
};

struct WorkflowOptions {
  std::string input_topic;  // default "<name>.in": the workflow's own messages, keyed by id
  std::string state_topic;  // default "<name>.state": compacted, co-partitioned with the input
  // How long a completed or failed instance is kept, so that late messages find it "completed"
  // (and a redelivered starter is recognised); then a tombstone removes it.
  std::chrono::milliseconds completed_retention{std::chrono::hours(24 * 7)};
  // How long the result a completed run recorded (WorkflowContext::Complete(result)) is kept
  // and served; must be positive. The record lives at least as long as its result: it is
  // removed after max(completed_retention, result_retention). A result that expires first is
  // dropped from the record then (one more state write).
  std::chrono::milliseconds result_retention{std::chrono::hours(24)};
  std::size_t remembered_messages = 64;  // the ring of processed message ids, per instance
  std::size_t max_state_bytes = 512 * 1024;  // a bigger state record is refused, loudly
  DeliveryPolicy policy;                     // for the deliveries of the workflow's messages
};

// The largest result a run may record: bytes of its compact JSON text (as the state record
// holds it). A bigger one, or text that is not one JSON value, is refused (see Complete).
inline constexpr std::size_t kMaxResultBytes = 16 * 1024;

// `json` as a run's result is stored: one JSON value within kbus's rules, written back compact
// (no blanks between tokens), at most kMaxResultBytes. Errors say which rule it breaks: kDecode
// for text that is not one JSON value, kInvalidArgument for a result too large (and its size).
Result<std::string> CompactResult(std::string_view json);

// A timeout as a handler sees it when it fires, and as Timeouts() lists it.
struct Timeout {
  std::string id;       // unique within the instance
  std::string name;     // what OnTimeout registered
  std::string payload;  // JSON text given to RequestTimeout ("" for none)
  std::int64_t due_ms = 0;  // Unix epoch milliseconds
};

// One outgoing message, one timeout change, one ending: what a handler asked for.
class WorkflowContext {
 public:
  using Clock = std::chrono::system_clock;

  WorkflowContext(std::string_view workflow_id, const Envelope& envelope, std::int64_t now_ms,
                  int run, const std::vector<Timeout>& timeouts, std::size_t first_index)
      : workflow_id_(workflow_id), envelope_(envelope), now_ms_(now_ms), run_(run),
        timeouts_(timeouts), next_index_(first_index) {}
  WorkflowContext(const WorkflowContext&) = delete;
  WorkflowContext& operator=(const WorkflowContext&) = delete;

  const std::string& workflow_id() const { return workflow_id_; }
  // The envelope of the message being handled (for a timeout, of its firing).
  const Envelope& envelope() const { return envelope_; }
  // The host's clock (a test clock in the test kit). Use it instead of reading a clock.
  Clock::time_point Now() const { return Clock::time_point(std::chrono::milliseconds(now_ms_)); }
  std::int64_t NowMs() const { return now_ms_; }
  // 1 for the first run of this workflow id; a starter after completion begins the next.
  int run() const { return run_; }

  // Outgoing messages: they inherit the correlation id, carry the workflow id (and are keyed by
  // it unless `options` say otherwise), and leave after the state is written.
  template <Command T>
  void Send(const T& command, SendOptions options = {}) {
    Add(BuildRecord(command, Sticky(std::move(options)), &envelope_, next_index_++));
  }
  template <Event T>
  void Publish(const T& event, SendOptions options = {}) {
    Add(BuildRecord(event, Sticky(std::move(options)), &envelope_, next_index_++));
  }

  // Asks for OnTimeout(`name`) to run `after` from now, with `payload_json` (a JSON value, or
  // empty). Returns its id, for CancelTimeout.
  std::string RequestTimeout(std::string_view name, std::chrono::milliseconds after,
                             std::string payload_json = {});
  // False when no such timeout is pending (it fired, or was cancelled).
  bool CancelTimeout(std::string_view id);
  // Cancels every pending timeout of that name; returns how many.
  int CancelTimeouts(std::string_view name);
  // The pending timeouts, after this handler's changes so far.
  const std::vector<Timeout>& Timeouts() const { return timeouts_; }

  // Ends the run successfully: pending timeouts are dropped, the record is kept for
  // completed_retention, then removed. A result recorded before in this handling is kept.
  void Complete() { ending_ = Ending::kCompleted; }
  // Ends the run successfully and records `result` (encoded through its JsonTraits, as for
  // messages) as the run's result: it is kept in the state record, as JSON, for
  // WorkflowOptions::result_retention (docs/workflows.md, "Results"). The last call wins. A
  // result above kMaxResultBytes is refused when the handler returns: nothing is written and
  // the message goes to the dead-letter topic with reason "result-too-large" and an error naming
  // the workflow and the instance. A value kbus cannot encode throws EncodeError (kbus/codec.hpp).
  template <class T>
  void Complete(const T& result) {
    CompleteWithJson(ToJson(result));
  }
  // The same with the result as JSON text (any one JSON value, e.g. from a program's output).
  // Text that is not one JSON value is refused as above, with reason "result-invalid".
  void CompleteWithJson(std::string result_json) {
    ending_ = Ending::kCompleted;
    result_json_ = std::move(result_json);
  }
  // Ends the run as failed, and sends the message that started it to the host's dead-letter
  // topic with reason `reason` (e.g. "attempts-exhausted"), `error`, `attempts`, and `headers`
  // added to the kbus-dlq-* ones (e.g. kbus-dlq-outcome). A failed run records no result, even
  // one given to Complete before in the same handling.
  void DeadLetter(std::string reason, std::string error, int attempts = 0,
                  std::vector<Header> headers = {});

  // For the host.
  enum class Ending { kNone, kCompleted, kFailed };
  struct DeadLetterRequest {
    std::string reason, error;
    int attempts = 0;
    std::vector<Header> headers;
  };
  Ending ending() const { return ending_; }
  // The result given to Complete, as given; nullopt when none was.
  const std::optional<std::string>& result_json() const { return result_json_; }
  const std::optional<DeadLetterRequest>& dead_letter() const { return dead_letter_; }
  std::vector<OutgoingRecord>& outgoing() { return outgoing_; }
  std::vector<Timeout>& timeouts() { return timeouts_; }
  bool timeouts_changed() const { return timeouts_changed_; }
  std::size_t next_index() const { return next_index_; }

 private:
  SendOptions Sticky(SendOptions options) const {
    if (options.workflow_id.empty()) options.workflow_id = workflow_id_;
    return options;
  }
  void Add(OutgoingRecord record) { outgoing_.push_back(std::move(record)); }

  std::string workflow_id_;
  const Envelope& envelope_;
  std::int64_t now_ms_;
  int run_;
  std::vector<Timeout> timeouts_;
  std::size_t next_index_;
  std::size_t timer_count_ = 0;
  bool timeouts_changed_ = false;
  Ending ending_ = Ending::kNone;
  std::optional<DeadLetterRequest> dead_letter_;
  std::optional<std::string> result_json_;
  std::vector<OutgoingRecord> outgoing_;
};

namespace detail {

// A step runs one handler over the state as JSON text: it decodes the state (and the message),
// runs the typed handler, and encodes the state back. Errors are decode failures; handler
// exceptions pass through.
using StepFn = std::function<Status(const JsonValue* message, std::string& state_json,
                                    WorkflowContext& ctx, const Timeout* timeout)>;
using KeyFn = std::function<Result<std::string>(const JsonValue& message)>;

struct Step {
  std::string type;
  MessageKind kind = MessageKind::kCommand;
  std::string topic;  // where the message arrives (its kTopic unless given)
  bool starter = false;
  KeyFn key;          // empty: by the kbus-workflow-id header
  NotFound not_found = NotFound::kLog;
  StepFn run;
};

using UpgradeFn = std::function<Result<std::string>(std::string_view state_json)>;

// Everything the host needs, without the state's C++ type.
struct Spec {
  std::string name;
  int schema = 1;
  WorkflowOptions options;
  std::function<std::string()> initial_state;  // JSON of a default-constructed state
  std::vector<Step> steps;
  std::map<std::string, StepFn, std::less<>> timeouts;
  std::map<int, UpgradeFn> upgrades;  // from schema N to N + 1
};

template <class S>
Status RunTyped(const std::string& state_json, std::string& out, const std::function<void(S&)>& fn) {
  Result<S> state = FromJson<S>(state_json);
  if (!state.ok()) return Error(ErrorCode::kDecode, "the workflow state does not decode: " + state.error().message());
  fn(*state);
  out = ToJson(*state);
  return Status();
}

}  // namespace detail

// Options of one message a workflow handles (besides its starters).
template <class M>
struct On {
  // The workflow id the message belongs to; empty: its kbus-workflow-id header (replies to
  // messages the workflow sent, and launcher events, carry it).
  std::function<std::string(const M&)> key;
  NotFound not_found = NotFound::kLog;
  std::string topic;  // default: M's kTopic
};

template <class S>
class Workflow {
 public:
  template <class M>
  using Handler = std::function<void(const M&, S&, WorkflowContext&)>;

  // `name` is stable: it names the topics and is stored in the state records. Never the C++
  // type name. `schema` is the state's current version (see Upgrade).
  explicit Workflow(std::string name, WorkflowOptions options = {}, int schema = 1) {
    spec_.name = std::move(name);
    spec_.schema = schema;
    spec_.options = std::move(options);
    if (spec_.options.input_topic.empty()) spec_.options.input_topic = spec_.name + ".in";
    if (spec_.options.state_topic.empty()) spec_.options.state_topic = spec_.name + ".state";
    spec_.initial_state = [] { return ToJson(S{}); };
  }

  // M starts an instance (or, when one runs for that id, is handled by it). `key` gives the
  // workflow id. A starter for a completed instance begins a new run unless it is a message
  // the instance already processed.
  template <Message M>
  Workflow& StartedBy(std::function<std::string(const M&)> key, Handler<M> handler,
                      std::string topic = {}) {
    detail::Step step = MakeStep<M>(std::move(handler), std::move(topic));
    step.starter = true;
    step.key = KeyOf<M>(std::move(key));
    spec_.steps.push_back(std::move(step));
    return *this;
  }

  template <Message M>
  Workflow& Handles(Handler<M> handler, On<M> on = {}) {
    detail::Step step = MakeStep<M>(std::move(handler), std::move(on.topic));
    step.not_found = on.not_found;
    if (on.key) step.key = KeyOf<M>(std::move(on.key));
    spec_.steps.push_back(std::move(step));
    return *this;
  }

  Workflow& OnTimeout(std::string name, std::function<void(const Timeout&, S&, WorkflowContext&)> handler) {
    spec_.timeouts[std::move(name)] = [handler = std::move(handler)](const JsonValue*, std::string& state,
                                                                      WorkflowContext& ctx, const Timeout* t) {
      return detail::RunTyped<S>(state, state, [&](S& s) { handler(*t, s, ctx); });
    };
    return *this;
  }

  // Turns a state stored with schema `from` into the JSON of schema `from + 1`. Applied on load,
  // in order, up to the current schema; the record is rewritten on its next change.
  Workflow& Upgrade(int from, detail::UpgradeFn fn) {
    spec_.upgrades[from] = std::move(fn);
    return *this;
  }
  // The same with typed old and new states: `Old` as it was stored, `New` as schema from + 1.
  template <class Old, class New>
  Workflow& Upgrade(int from, std::function<New(Old)> fn) {
    return Upgrade(from, [fn = std::move(fn)](std::string_view json) -> Result<std::string> {
      Result<Old> old = FromJson<Old>(json);
      if (!old.ok()) return old.error();
      return ToJson(fn(std::move(*old)));
    });
  }

  const detail::Spec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  const WorkflowOptions& options() const { return spec_.options; }

 private:
  template <Message M>
  static detail::KeyFn KeyOf(std::function<std::string(const M&)> key) {
    return [key = std::move(key)](const JsonValue& payload) -> Result<std::string> {
      Result<M> m = FromJsonValue<M>(payload);
      if (!m.ok()) return m.error();
      return key(*m);
    };
  }

  template <Message M>
  static detail::Step MakeStep(Handler<M> handler, std::string topic) {
    detail::Step step;
    step.type = std::string(MessageTraits<M>::kType);
    step.kind = MessageTraits<M>::kKind;
    step.topic = topic.empty() ? std::string(MessageTraits<M>::kTopic) : std::move(topic);
    step.run = [handler = std::move(handler)](const JsonValue* payload, std::string& state,
                                              WorkflowContext& ctx, const Timeout*) -> Status {
      Result<M> m = FromJsonValue<M>(*payload);
      if (!m.ok()) return m.error();
      return detail::RunTyped<S>(state, state, [&](S& s) { handler(*m, s, ctx); });
    };
    return step;
  }

  detail::Spec spec_;
};

}  // namespace kbus::workflows
