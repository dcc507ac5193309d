#include "consumer.hpp"

#include <algorithm>
#include <stdexcept>

#include "kbus/log.hpp"

namespace kbus::kafka::worker {

using detail::RdPartitionListPtr;

void Consumer::Open(const std::map<std::string, std::string>& properties, const Callbacks& callbacks,
                    const std::vector<std::string>& topics) {
  auto conf = detail::MakeConf(properties);
  detail::RouteLogs(conf.get());
  rd_kafka_conf_set_opaque(conf.get(), callbacks.opaque);
  rd_kafka_conf_set_rebalance_cb(conf.get(), callbacks.rebalance);
  if (callbacks.stats != nullptr) rd_kafka_conf_set_stats_cb(conf.get(), callbacks.stats);
  rd_kafka_conf_set_error_cb(conf.get(), callbacks.error);
  handle_ = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
  // Serve logs, rebalances and commit results from rd_kafka_consumer_poll, on the poll thread.
  rd_kafka_poll_set_consumer(handle_.get());
  queue_.reset(rd_kafka_queue_get_consumer(handle_.get()));
  if (topics.empty()) throw std::invalid_argument("worker has no topics: register a handler or set extra_topics");
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& t : topics) rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  if (rd_kafka_resp_err_t err = rd_kafka_subscribe(handle_.get(), list.get())) {
    throw std::runtime_error(std::string("cannot subscribe: ") + rd_kafka_err2str(err));
  }
}

void Consumer::Assign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative) {
  if (cooperative) {
    if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, parts)) {
      Log(LogLevel::kError, "incremental assign failed", {{"error", rd_kafka_error_string(e)}});
      rd_kafka_error_destroy(e);
    }
  } else {
    rd_kafka_assign(rk, parts);
  }
  // librdkafka keeps a partition's application pause across a revoke and a new assignment
  // (2.0.2 resets only its own internal pause), while the new Partition starts unpaused: a
  // partition paused before a rebalance that hands it back would otherwise never be fetched
  // again. Resume them all, so both sides start from "fetching".
  if (rd_kafka_resp_err_t e = rd_kafka_resume_partitions(rk, parts)) {
    Log(LogLevel::kError, "cannot resume assigned partitions", {{"error", rd_kafka_err2str(e)}});
  }
}

void Consumer::Unassign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative) {
  if (cooperative) {
    if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, parts)) rd_kafka_error_destroy(e);
  } else {
    rd_kafka_assign(rk, nullptr);
  }
}

void Consumer::SyncPause(Partition& p) {
  const bool pause = PartitionBook::WantsPause(p);
  if (pause == p.paused) return;
  RdPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
  const rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(handle_.get(), list.get())
                                        : rd_kafka_resume_partitions(handle_.get(), list.get());
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    p.paused = pause;
    counters_.paused.fetch_add(pause ? 1 : -1, std::memory_order_relaxed);
  } else {
    Log(LogLevel::kError, pause ? "cannot pause partition" : "cannot resume partition",
        {{"topic", p.topic}, {"partition", p.partition}, {"error", rd_kafka_err2str(err)}});
  }
}

void Consumer::UpdateLag(PartitionBook& book) {
  book.ForEach([&](Partition& p) {
    std::int64_t low = -1, high = -1;
    if (p.lag == nullptr ||
        rd_kafka_get_watermark_offsets(handle_.get(), p.topic.c_str(), p.partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      return;  // not fetched yet: nothing known
    }
    std::int64_t position = PartitionBook::CommitOffset(p);
    if (position < 0) position = p.start >= 0 ? p.start : low;  // auto.offset.reset=earliest
    if (position >= 0) p.lag->Set(static_cast<double>(std::max<std::int64_t>(0, high - position)));
  });
}

// A partition that has work and has not moved while nothing of the worker holds it (no run in
// flight, no retry or tier wait, no slot wait) is waiting on something the worker does not know
// of (a pause librdkafka kept, a leader that does not answer), so it is made loud rather than
// left silent. "Work" is a buffered record, or the broker's end of the partition (as librdkafka
// last heard it) beyond what was read.
void Consumer::CheckStalls(PartitionBook& book, Clock::time_point now) {
  std::uint32_t count = 0;
  book.ForEach([&](Partition& p) {
    SyncPause(p);  // again, if librdkafka refused the last pause or resume
    if (config_.stall_warning.count() == 0) return;
    std::int64_t low = -1, high = -1;
    rd_kafka_get_watermark_offsets(handle_.get(), p.topic.c_str(), p.partition, &low, &high);
    const std::int64_t read_to = p.next_offset >= 0 ? p.next_offset : p.start >= 0 ? p.start : low;
    const bool work = !p.entries.empty() || (high >= 0 && read_to >= 0 && high > read_to);
    const bool held = p.in_flight > 0 || p.head_wait || p.starved || !p.waits.empty();
    const bool stalled = work && !held && now - p.moved >= config_.stall_warning;
    if (stalled && !p.stall_reported) {
      Log(LogLevel::kWarn, "partition has work but has not moved",
          {{"topic", p.topic}, {"partition", p.partition}, {"group", config_.group},
           {"seconds", std::chrono::duration_cast<std::chrono::seconds>(now - p.moved).count()},
           {"buffered", p.entries.size()}, {"read_to", read_to}, {"high_watermark", high}, {"paused", p.paused}});
    } else if (!stalled && p.stall_reported) {
      Log(LogLevel::kInfo, "partition moves again", {{"topic", p.topic}, {"partition", p.partition}});
    }
    p.stall_reported = stalled;
    count += stalled ? 1 : 0;
  });
  counters_.stalled.store(count, std::memory_order_relaxed);
}

// The revoke is served here, through the usual rebalance callback: a revoke served from inside
// rd_kafka_consumer_close can hang for good in rd_kafka_assign (caught in a test: the poll thread
// blocked there with every other thread idle; librdkafka issue #4884 describes the same hang).
// Bounded: after 10 s the close does the rest.
void Consumer::Close(const std::function<bool()>& revoked) {
  if (!revoked()) {
    if (rd_kafka_resp_err_t err = rd_kafka_unsubscribe(handle_.get())) {
      Log(LogLevel::kWarn, "unsubscribe failed", {{"error", rd_kafka_err2str(err)}});
    } else {
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (!revoked() && Clock::now() < deadline) {
        // Records still arriving are not handled: the next owner reads them from the commit.
        if (rd_kafka_message_t* m = rd_kafka_consumer_poll(handle_.get(), 100)) rd_kafka_message_destroy(m);
      }
      if (!revoked()) {
        Log(LogLevel::kWarn, "partitions not revoked 10 s after unsubscribing; closing anyway",
            {{"group", config_.group}});
      }
    }
  }
  if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(handle_.get())) {
    Log(LogLevel::kWarn, "consumer close failed", {{"error", rd_kafka_err2str(err)}});
  }
}

}  // namespace kbus::kafka::worker
