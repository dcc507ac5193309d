#include "group_watch.hpp"

#include <algorithm>
#include <exception>

#include "kbus/log.hpp"

namespace kbus::kafka::worker {

namespace {

// The string value of `"key": "` after position `from` in librdkafka's statistics text.
std::string_view StatsString(std::string_view json, std::string_view key, std::size_t from) {
  const std::string pattern = "\"" + std::string(key) + "\": \"";
  const std::size_t at = json.find(pattern, from);
  if (at == std::string_view::npos) return {};
  const std::size_t start = at + pattern.size();
  const std::size_t end = json.find('"', start);
  return end == std::string_view::npos ? std::string_view() : json.substr(start, end - start);
}

}  // namespace

void GroupWatch::OnStats(std::string_view json) {
  const std::size_t cgrp = json.find("\"cgrp\": {");
  if (cgrp == std::string_view::npos) return;
  const std::string_view state = StatsString(json, "state", cgrp);
  const std::string_view join_state = StatsString(json, "join_state", cgrp);
  const bool up = state == "up";
  coordinator_up_.store(up, std::memory_order_relaxed);
  if (up && join_state == "steady") joined_.store(true, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    state_.assign(state).append("/").append(join_state);
  }
  const auto now = Clock::now();
  if (up) {
    if (wait_logged_) {
      Log(LogLevel::kInfo, "brokers reachable again",
          {{"group", group_},
           {"seconds", std::chrono::duration_cast<std::chrono::seconds>(now - unreachable_since_).count()}});
    }
    unreachable_since_ = {};
    wait_logged_ = false;
    return;
  }
  if (unreachable_since_ == Clock::time_point{}) unreachable_since_ = now;
  if (now - unreachable_since_ >= kWaitLogAfter && now >= next_wait_log_) {
    next_wait_log_ = now + kWaitLogEvery;
    wait_logged_ = true;
    Log(LogLevel::kWarn, "waiting for the brokers: the group coordinator is not reachable; retrying",
        {{"group", group_}, {"brokers", brokers_},
         {"seconds", std::chrono::duration_cast<std::chrono::seconds>(now - unreachable_since_).count()},
         {"group_state", std::string(state) + "/" + std::string(join_state)},
         {"last_error", last_error_}});
  }
}

void GroupWatch::OnError(rd_kafka_resp_err_t err, const char* reason) {
  last_error_ = reason != nullptr ? reason : rd_kafka_err2str(err);
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
      err == RD_KAFKA_RESP_ERR__RESOLVE) {
    return;
  }
  Log(err == RD_KAFKA_RESP_ERR__FATAL ? LogLevel::kError : LogLevel::kWarn, "consumer error",
      {{"group", group_}, {"error", last_error_}, {"code", rd_kafka_err2name(err)}});
}

health::Report GroupWatch::Report(const Facts& f) const {
  health::Report r;
  const std::string group_state = state();
  // While stopping, the loop drains on purpose (bounded by shutdown_grace): not a hang.
  if (!f.stopping && f.silence > f.silence_limit) {
    r.live = false;
    r.reason = "the poll loop has not turned for " +
               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(f.silence).count()) + " s";
  } else if (f.stuck) {
    r.live = false;
    r.reason = "a handler has run past " + std::to_string(f.stuck_factor) + " visibility timeouts";
  }
  r.ready = r.live && !f.stopping && reachable() && joined() && f.producer_warm;
  if (r.reason.empty()) {
    if (f.stopping) {
      r.reason = "the worker is stopping";
    } else if (!reachable()) {
      r.reason = "the group coordinator is not reachable (brokers " + brokers_ + ")";
    } else if (!joined()) {
      r.reason = "the group is not joined yet (group state " + group_state + ")";
      // librdkafka joins only once a subscribed topic exists.
      if (group_state == "up/init") r.reason += ": do the worker's topics exist?";
    } else if (!f.producer_warm) {
      r.reason = "the worker's producer is still learning the cluster's topics";
    }
  }
  r.active_work = f.running;
  r.details.emplace_back("group", group_);
  r.details.emplace_back("group_state", group_state);
  r.details.emplace_back("assigned_partitions", static_cast<std::int64_t>(f.assigned));
  r.details.emplace_back("active_runs", f.running);
  r.details.emplace_back("paused_partitions", static_cast<std::int64_t>(f.paused));
  r.details.emplace_back("stalled_partitions", static_cast<std::int64_t>(f.stalled));
  return r;
}

namespace {

void CallHook(const GroupWatch::Hook& hook, const std::vector<TopicPartition>& parts, std::string_view name) {
  if (!hook || parts.empty()) return;
  try {
    hook(parts);
  } catch (const std::exception& e) {
    Log(LogLevel::kError, "rebalance hook failed", {{"hook", name}, {"error", e.what()}});
  } catch (...) {  // user code: a thrown int must not terminate the worker either
    Log(LogLevel::kError, "rebalance hook failed",
        {{"hook", name}, {"error", "an exception not derived from std::exception"}});
  }
}

}  // namespace

void GroupWatch::Assigned(const rd_kafka_topic_partition_list_t* parts, const Hook& hook) {
  std::vector<TopicPartition> given;
  for (int i = 0; i < parts->cnt; ++i) {
    TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
    if (std::find(hooked_.begin(), hooked_.end(), tp) == hooked_.end()) {
      hooked_.push_back(tp);
      given.push_back(std::move(tp));
    }
  }
  CallHook(hook, given, "on_assigned");
}

void GroupWatch::Revoked(const rd_kafka_topic_partition_list_t* parts, const Hook& hook) {
  std::vector<TopicPartition> taken;
  if (parts == nullptr) {
    taken.swap(hooked_);
  } else {
    for (int i = 0; i < parts->cnt; ++i) {
      TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
      if (auto it = std::find(hooked_.begin(), hooked_.end(), tp); it != hooked_.end()) {
        hooked_.erase(it);
        taken.push_back(std::move(tp));
      }
    }
  }
  CallHook(hook, taken, "on_revoked");
}

std::string GroupWatch::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

}  // namespace kbus::kafka::worker
