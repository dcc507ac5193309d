// The public Launcher: the constructor's checks of the config, the routes it registers, and
// what forwards to Launcher::Impl (launcher_impl.hpp says which file holds what); also
// ParseReplyTopics and Backend::Follow's default.

#include <stdexcept>

#include "launcher_impl.hpp"

namespace kbus::handlers {

namespace {

using detail::Shown;

}  // namespace

Launcher::Launcher(LauncherConfig config, AllowList allow, Backend& backend, EventSink& events) {
  if (config.max_processes < 1) {
    throw std::invalid_argument("launcher: max_processes must be at least 1, got " +
                                std::to_string(config.max_processes));
  }
  if (config.default_heartbeat < kMinHeartbeatInterval || config.default_heartbeat > kMaxHeartbeatInterval) {
    throw std::invalid_argument("launcher: the default heartbeat must be from " +
                                std::to_string(kMinHeartbeatInterval.count()) + " to " +
                                std::to_string(kMaxHeartbeatInterval.count()) + " ms");
  }
  if (config.kill_grace.count() < 0 || config.kill_grace > kMaxKillGrace) {
    throw std::invalid_argument("launcher: kill_grace must be from 0 to " + std::to_string(kMaxKillGrace.count()) + " ms");
  }
  if (config.remembered_jobs == 0) throw std::invalid_argument("launcher: remembered_jobs must be at least 1");
  if (config.reply_topics.empty()) throw std::invalid_argument("launcher: reply_topics must name at least one topic");
  for (const auto& pattern : config.reply_topics) {
    if (!detail::IsTopicPattern(pattern)) {
      throw std::invalid_argument("launcher: reply topic '" + Shown(pattern) +
                                  "' is not a topic name or pattern ([a-zA-Z0-9._-] and '*')");
    }
  }
  impl_ = std::make_unique<Impl>(std::move(config), std::move(allow), backend, events);
}

Launcher::~Launcher() { impl_->Shutdown(); }

void Launcher::Register(HandlerRegistry& handlers, HandlerOptions launch, HandlerOptions cancel) {
  launch.policy.slots = impl_->slots;
  Impl* impl = impl_.get();
  // The launch route decodes the payload itself (Impl::OnLaunchPayload): a field that does not
  // decode is reported to reply_to, not only dead-lettered.
  using Traits = MessageTraits<LaunchProcess>;
  handlers.AddRoute({std::string(Traits::kType), Traits::kKind,
                     launch.topic.empty() ? std::string(Traits::kTopic) : std::move(launch.topic),
                     [impl](const JsonValue& payload, Context& ctx) { return impl->OnLaunchPayload(payload, ctx); },
                     std::move(launch.policy)});
  handlers.Handle<CancelProcess>(
      [impl](const CancelProcess& cmd, Context& ctx) { return impl->OnCancel(cmd, ctx); }, std::move(cancel));
}

void Launcher::Shutdown() { impl_->Shutdown(); }

void Launcher::Adopt(const std::vector<std::string>& partitions) { impl_->Adopt(partitions); }

void Launcher::LetGo(const std::vector<std::string>& partitions) { impl_->LetGo(partitions); }

std::string Launcher::PartitionLabel(std::string_view topic, std::int32_t partition) {
  return std::string(topic) + ":" + std::to_string(partition);
}

ProcessResult Backend::Follow(const KeptJob&, const ProcessSpec&, const ProcessObserver&, ProcessControl&) {
  ProcessResult r;
  r.error = std::string("the ") + std::string(name()) + " backend keeps no jobs";
  return r;
}

void Launcher::ReportTo(metrics::Registry& metrics, health::Board& health) { impl_->ReportTo(metrics, health); }

LauncherStats Launcher::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

const std::shared_ptr<Slots>& Launcher::slots() const { return impl_->slots; }

Result<std::vector<std::string>> ParseReplyTopics(std::string_view list) {
  std::vector<std::string> out;
  while (true) {
    const auto comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    if (!detail::IsTopicPattern(entry)) {
      return Error(ErrorCode::kInvalidArgument,
                   "'" + Shown(entry) + "' is not a topic name or pattern: 1 to 249 of [a-zA-Z0-9._-], '*' "
                   "matching any run of them, entries separated by commas");
    }
    out.emplace_back(entry);
    if (comma == std::string_view::npos) return out;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace kbus::handlers
