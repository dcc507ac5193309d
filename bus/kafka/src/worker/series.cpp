#include "series.hpp"

#include "kbus/dead_letter.hpp"

namespace kbus::kafka::worker {

Series::Series(metrics::Registry& r, const std::string& g, const HandlerRegistry& handlers) {
  auto& handled_family = r.AddCounter(
      "kbus_worker_records_handled_total",
      "Deliveries by outcome: acked, skipped (an event type nobody here handles), retried, "
      "dead_lettered (the copy acknowledged by the dead-letter topic), abandoned (outlived its "
      "visibility timeout; what follows is counted too)",
      {"group", "type", "outcome"});
  auto& duration_family =
      r.AddHistogram("kbus_worker_handler_duration_seconds", "How long handler runs took",
                     {"group", "type"}, metrics::DurationBuckets());
  auto series_of = [&](std::string_view type) {
    TypeSeries t;
    t.acked = &handled_family.With({g, type, "acked"});
    t.skipped = &handled_family.With({g, type, "skipped"});
    t.retried = &handled_family.With({g, type, "retried"});
    t.dead_lettered = &handled_family.With({g, type, "dead_lettered"});
    t.abandoned = &handled_family.With({g, type, "abandoned"});
    t.duration = &duration_family.With({g, type});
    return t;
  };
  // Per type, not per route: a type read on several topics (two workflows' launcher events)
  // counts in one series, and the label's values stay the registered types.
  for (const auto* route : handlers.Routes()) type_series_.emplace(route->type, series_of(route->type));
  unknown_type_ = &type_series_.emplace(std::string(kUnknownType), series_of(kUnknownType)).first->second;
  for (auto& [name, t] : type_series_) {
    t.name = name;
    all_types_.push_back(&t);
  }

  received_family = &r.AddCounter("kbus_worker_records_received_total", "Records fetched from the broker",
                                  {"group", "topic"});
  lag_family = &r.AddGauge("kbus_worker_consumer_lag",
                           "Records of an assigned partition not finished yet: its high watermark "
                           "minus the offset the worker commits next",
                           {"group", "topic", "partition"});
  auto& retries = r.AddCounter("kbus_worker_retries_total",
                               "Failed deliveries scheduled again, in the worker or through a retry tier topic",
                               {"group", "where"});
  retries_worker = &retries.With({g, "worker"});
  retries_tier = &retries.With({g, "tier"});
  auto& dead_letters = r.AddCounter("kbus_worker_dead_letters_total",
                                    "Records whose dead-letter copy the broker acknowledged, by reason",
                                    {"group", "reason"});
  for (std::string_view why :
       {reason::kDecodeError, reason::kUnknownType, reason::kRejected, reason::kNonRetryable,
        reason::kVisibilityTimeout, reason::kHandlerError, reason::kMaxDeliveries, reason::kSuspectedCrash,
        reason::kPublishError, std::string_view("workflow-not-found"), std::string_view("workflow-id-missing")}) {
    dead_letter_reasons_.emplace_back(why, &dead_letters.With({g, why}));
  }
  dead_letters_other_ = &dead_letters.With({g, "other"});
  auto& commits = r.AddCounter("kbus_worker_commits_total",
                               "Offset commits (the periodic ones and the leases that count deliveries), by result",
                               {"group", "result"});
  commits_ok = &commits.With({g, "ok"});
  commits_failed = &commits.With({g, "failed"});
  auto& rebalances = r.AddCounter("kbus_worker_rebalances_total", "Rebalance events of this member",
                                  {"group", "event"});
  rebalances_assigned = &rebalances.With({g, "assigned"});
  rebalances_revoked = &rebalances.With({g, "revoked"});
  rebalances_lost = &rebalances.With({g, "lost"});
  runs_gauge = &r.AddGauge("kbus_worker_runs_in_flight", "Handler runs executing now", {"group"}).With({g});
  assigned_gauge = &r.AddGauge("kbus_worker_assigned_partitions", "Partitions assigned to this member",
                               {"group"}).With({g});
  paused_gauge = &r.AddGauge("kbus_worker_paused_partitions",
                             "Assigned partitions not fetched now: buffer full, retry tier wait, or no free slot",
                             {"group"}).With({g});
  stalled_gauge = &r.AddGauge("kbus_worker_stalled_partitions",
                              "Assigned partitions that have work but have not moved for stall_warning",
                              {"group"}).With({g});
}

TypeSeries& Series::TypeFor(std::optional<std::string_view> type) {
  if (type) {
    if (auto it = type_series_.find(*type); it != type_series_.end()) return it->second;
  }
  return *unknown_type_;
}

TypeSeries& Series::TypeFor(std::optional<std::string_view> type, TypeSeries*& last) {
  if (last == nullptr || !type || last->name != *type) last = &TypeFor(type);
  return *last;
}

metrics::Counter& Series::DeadLetterCounter(std::string_view why) {
  for (auto& [name, counter] : dead_letter_reasons_) {
    if (name == why) return *counter;
  }
  return *dead_letters_other_;
}

void Series::Flush() {
  for (TypeSeries* t : all_types_) {
    if (t->acked_here > 0) t->acked->Inc(std::exchange(t->acked_here, 0));
    if (t->skipped_here > 0) t->skipped->Inc(std::exchange(t->skipped_here, 0));
  }
  if (received_in_ != nullptr) {
    received_in_->Inc(std::exchange(received_here_, 0));
    received_in_ = nullptr;
  }
}

}  // namespace kbus::kafka::worker
