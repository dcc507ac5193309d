// WorkflowHost's public methods, and what belongs to no one part of the host: the spec's
// checks, Start/Stop, and WorkflowContext's own methods. The host's state and the map of its
// other files: host_impl.hpp.

#include "kbus/workflows/host.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <thread>

#include "host_impl.hpp"

namespace kbus::workflows {

// ---- WorkflowContext -------------------------------------------------------------------------

std::string WorkflowContext::RequestTimeout(std::string_view name, std::chrono::milliseconds after,
                                            std::string payload_json) {
  std::string id = std::string(envelope_.message_id) + "#" + std::to_string(timer_count_++);
  timeouts_.push_back(Timeout{id, std::string(name), std::move(payload_json), now_ms_ + after.count()});
  timeouts_changed_ = true;
  return id;
}

bool WorkflowContext::CancelTimeout(std::string_view id) {
  auto it = std::find_if(timeouts_.begin(), timeouts_.end(), [&](const Timeout& t) { return t.id == id; });
  if (it == timeouts_.end()) return false;
  timeouts_.erase(it);
  timeouts_changed_ = true;
  return true;
}

int WorkflowContext::CancelTimeouts(std::string_view name) {
  const auto n = std::erase_if(timeouts_, [&](const Timeout& t) { return t.name == name; });
  if (n > 0) timeouts_changed_ = true;
  return static_cast<int>(n);
}

void WorkflowContext::DeadLetter(std::string reason, std::string error, int attempts,
                                 std::vector<Header> headers) {
  ending_ = Ending::kFailed;
  dead_letter_ = DeadLetterRequest{std::move(reason), std::move(error), attempts, std::move(headers)};
}

Result<std::string> CompactResult(std::string_view json) {
  JsonDocument doc;
  if (Status s = doc.Parse(json); !s.ok()) {
    return Error(ErrorCode::kDecode, "the result is not one JSON value: " + s.error().message());
  }
  std::string compact = doc.Root().ToJson();
  if (compact.size() > kMaxResultBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 "the result is " + std::to_string(compact.size()) + " bytes of JSON, above the " +
                     std::to_string(kMaxResultBytes) +
                     " allowed (kMaxResultBytes): record a summary, and put the data elsewhere");
  }
  return compact;
}

// ---- WorkflowHost::Impl ----------------------------------------------------------------------

namespace {

std::int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

WorkflowHost::Impl::Impl(const detail::Spec& s, HostConfig c, StateStore& st)
    : spec(s), config(std::move(c)), store(st) {
  if (config.group.empty()) throw std::invalid_argument("workflow host: the group is required (dead letters go to <group>.dlq)");
  if (!config.now_ms) config.now_ms = SystemNowMs;
  if (spec.name.empty()) throw std::invalid_argument("workflow: the name must not be empty");
  if (spec.schema < 1) throw std::invalid_argument("workflow " + spec.name + ": the schema must be >= 1");
  if (spec.options.result_retention.count() <= 0) {
    throw std::invalid_argument("workflow " + spec.name + ": result_retention must be positive (it is " +
                                std::to_string(spec.options.result_retention.count()) + " ms)");
  }
  bool any_starter = false;
  std::set<std::string> types;
  for (const detail::Step& step : spec.steps) {
    any_starter = any_starter || step.starter;
    if (!types.insert(step.type).second) {
      throw std::invalid_argument("workflow " + spec.name + ": message type " + step.type + " is declared twice");
    }
  }
  if (!any_starter) throw std::invalid_argument("workflow " + spec.name + ": no message starts it (StartedBy)");
  for (const auto& [name, fn] : spec.timeouts) {
    if (name.starts_with("kbus.")) {
      throw std::invalid_argument("workflow " + spec.name + ": timeout names beginning with 'kbus.' are reserved");
    }
  }
  timeout_type = spec.name + ".timeout";
}

// Stops the timer thread and the loaders; handlers still running see `stopping` in WaitReady.
void WorkflowHost::Impl::Stop() {
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  timer_cv.notify_all();
  if (timer.joinable()) timer.join();
  std::vector<Loader> threads;
  {
    std::lock_guard lock(mu);
    threads.swap(loaders);
  }
  for (Loader& l : threads) {
    if (l.thread.joinable()) l.thread.join();
  }
}

InstanceInfo WorkflowHost::Impl::Info(const Record& in) {
  return InstanceInfo{in.id,       in.status, in.run,         in.version,
                      in.schema,   in.state_json, in.timeouts, in.outbox,
                      in.result_json, in.result_expires_ms};
}

// ---- WorkflowHost ----------------------------------------------------------------------------

WorkflowHost::WorkflowHost(const detail::Spec& spec, HostConfig config, StateStore& store)
    : impl_(std::make_unique<Impl>(spec, std::move(config), store)) {}

WorkflowHost::~WorkflowHost() { Stop(); }

void WorkflowHost::Register(HandlerRegistry& registry) {
  Impl* impl = impl_.get();
  for (std::size_t route = 0; route < impl->spec.steps.size(); ++route) {
    const detail::Step& step = impl->spec.steps[route];
    const detail::Step* s = &step;
    registry.AddRoute(HandlerRegistry::Route{
        step.type, step.kind, step.topic,
        [impl, s, route](const JsonValue& payload, Context& ctx) {
          return impl->Tallied(route, [&](Impl::StepResult& result) { return impl->OnMessage(*s, payload, ctx, result); });
        },
        impl->spec.options.policy});
    // Re-keyed copies arrive on the input topic: registered there too, they find this route even
    // when another workflow in the same registry handles the type on a topic of its own.
    if (step.topic != impl->spec.options.input_topic) {
      HandlerRegistry::Route copy = *registry.Find(step.type, step.topic);
      copy.topic = impl->spec.options.input_topic;
      copy.lanes.clear();
      registry.AddRoute(std::move(copy));
    }
  }
  registry.AddRoute(HandlerRegistry::Route{
      impl->timeout_type, MessageKind::kCommand, impl->spec.options.input_topic,
      [impl, route = impl->spec.steps.size()](const JsonValue& payload, Context& ctx) {
        return impl->Tallied(route, [&](Impl::StepResult& result) { return impl->OnTimeoutMessage(payload, ctx, result); });
      },
      impl->spec.options.policy});
}

std::vector<std::string> WorkflowHost::ExtraTopics() const { return {impl_->spec.options.input_topic}; }
const std::string& WorkflowHost::input_topic() const { return impl_->spec.options.input_topic; }
const std::string& WorkflowHost::state_topic() const { return impl_->spec.options.state_topic; }
const std::string& WorkflowHost::timeout_type() const { return impl_->timeout_type; }

void WorkflowHost::OnAssigned(const std::vector<std::int32_t>& partitions) { impl_->OnAssigned(partitions); }
void WorkflowHost::OnRevoked(const std::vector<std::int32_t>& partitions) { impl_->OnRevoked(partitions); }

void WorkflowHost::Start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->timer.joinable() || impl_->stopping) return;
  impl_->timer_started = true;
  impl_->timer_running.store(true);
  impl_->timer = std::thread([impl = impl_.get()] { impl->TimerLoop(); });
}

void WorkflowHost::ReportTo(metrics::Registry& metrics, health::Board& health) { impl_->ReportTo(metrics, health); }

void WorkflowHost::Stop() { impl_->Stop(); }
int WorkflowHost::FireDue() { return impl_->FireDue(); }

HostStats WorkflowHost::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

std::optional<InstanceInfo> WorkflowHost::Instance(std::string_view workflow_id) const {
  std::lock_guard lock(impl_->mu);
  for (const auto& [n, p] : impl_->partitions) {
    auto it = p->instances.find(std::string(workflow_id));
    if (it != p->instances.end()) return Impl::Info(it->second);
  }
  return std::nullopt;
}

std::vector<InstanceInfo> WorkflowHost::Instances() const {
  std::lock_guard lock(impl_->mu);
  std::vector<InstanceInfo> out;
  for (const auto& [n, p] : impl_->partitions) {
    for (const auto& [id, in] : p->instances) out.push_back(Impl::Info(in));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.workflow_id < b.workflow_id; });
  return out;
}

}  // namespace kbus::workflows
