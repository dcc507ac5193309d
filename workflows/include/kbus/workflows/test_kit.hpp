#pragma once
// WorkflowTestKit: runs a workflow without a broker. Messages go through the same host and
// dispatcher as in production (re-keying, dedupe, state records, outbox, timeouts), over an
// in-memory bus, a MemoryStateStore and a test clock that only moves when told.
//
//   WorkflowTestKit<Order> kit(MakeOrderWorkflow());
//   kit.Send(PlaceOrder{"o-1", 30});
//   EXPECT_EQ(kit.State("o-1")->status, "awaiting-payment");
//   kit.Advance(std::chrono::minutes(15));          // fires what is due, runs it
//   EXPECT_EQ(kit.Status("o-1"), "failed");
//   EXPECT_EQ(kit.DeadLetters().size(), 1u);
//
// Needs kbus::workflows_testing. Thread safety: none; one test thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/testing/in_memory_bus.hpp"
#include "kbus/workflows/host.hpp"
#include "kbus/workflows/memory_state_store.hpp"
#include "kbus/workflows/workflow.hpp"

namespace kbus::workflows {

struct TestKitOptions {
  std::string group = "test";
  std::int64_t start_ms = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  int max_deliveries = 5;
  // Records already in the store (e.g. written by an older schema): pass a store to share.
  MemoryStateStore* store = nullptr;
};

template <class S>
class WorkflowTestKit {
 public:
  explicit WorkflowTestKit(const Workflow<S>& workflow, TestKitOptions options = {})
      : options_(std::move(options)), now_ms_(options_.start_ms) {
    store_ = options_.store != nullptr ? options_.store : &own_store_;
    HostConfig config;
    config.group = options_.group;
    config.host = "test-host";
    config.now_ms = [this] { return now_ms_; };
    config.send = [this](const OutgoingRecord& r) {
      bus_->Append(r);
      return Ok();
    };
    host_ = std::make_unique<WorkflowHost>(workflow, std::move(config), *store_);
    host_->Register(registry_);
    bus_ = std::make_unique<testing::InMemoryBus>(
        registry_, testing::InMemoryOptions{options_.group, options_.max_deliveries});
    host_->OnAssigned({0});  // the in-memory bus has one partition
  }

  // Sends a message with a fresh envelope (to its kTopic unless `options` name one) and runs
  // everything that follows from it.
  template <Message M>
  void Send(const M& message, SendOptions options = {}) {
    bus_->Send(message, std::move(options));
    bus_->RunUntilIdle();
  }
  // Appends a record exactly as given (a duplicate, a broken payload) and runs.
  void Append(OutgoingRecord record) {
    bus_->Append(std::move(record));
    bus_->RunUntilIdle();
  }

  // Moves the clock, fires the timeouts due by then, and runs what follows.
  void Advance(std::chrono::milliseconds by) {
    now_ms_ += by.count();
    while (host_->FireDue() > 0) bus_->RunUntilIdle();
  }
  std::int64_t NowMs() const { return now_ms_; }

  std::optional<S> State(std::string_view id) const {
    auto in = host_->Instance(id);
    if (!in) return std::nullopt;
    Result<S> s = FromJson<S>(in->state_json);
    if (!s.ok()) return std::nullopt;
    return *s;
  }
  // "running", "completed", "failed", or "" when there is no record.
  std::string Status(std::string_view id) const {
    auto in = host_->Instance(id);
    return in ? in->status : std::string();
  }
  std::optional<InstanceInfo> Instance(std::string_view id) const { return host_->Instance(id); }
  // The result the instance's run recorded (Complete(result)), as compact JSON text; nullopt
  // when there is none (no record, no result, or it expired and was dropped).
  std::optional<std::string> ResultJson(std::string_view id) const {
    auto in = host_->Instance(id);
    if (!in || in->result_json.empty()) return std::nullopt;
    return in->result_json;
  }
  // The same, decoded as T; nullopt also when it does not decode as T.
  template <class T>
  std::optional<T> ResultAs(std::string_view id) const {
    auto json = ResultJson(id);
    if (!json) return std::nullopt;
    auto value = FromJson<T>(*json);
    if (!value.ok()) return std::nullopt;
    return *std::move(value);
  }
  std::vector<Timeout> Timeouts(std::string_view id) const {
    auto in = host_->Instance(id);
    return in ? in->timeouts : std::vector<Timeout>{};
  }

  // Messages of type T sent to a topic (default T's kTopic), decoded, in order.
  template <Message T>
  std::vector<T> Sent(std::string_view topic = MessageTraits<T>::kTopic) const {
    return bus_->Messages<T>(topic);
  }
  const std::vector<OutgoingRecord>& Records(std::string_view topic) const { return bus_->Records(topic); }
  const std::vector<OutgoingRecord>& DeadLetters() const { return bus_->DeadLetters(); }
  HostStats Stats() const { return host_->Stats(); }

  WorkflowHost& host() { return *host_; }
  MemoryStateStore& store() { return *store_; }
  testing::InMemoryBus& bus() { return *bus_; }

 private:
  TestKitOptions options_;
  std::int64_t now_ms_;
  MemoryStateStore own_store_;
  MemoryStateStore* store_ = nullptr;
  HandlerRegistry registry_;
  std::unique_ptr<WorkflowHost> host_;
  std::unique_ptr<testing::InMemoryBus> bus_;
};

}  // namespace kbus::workflows
