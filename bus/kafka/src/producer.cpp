#include "kbus/kafka/producer.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "kbus/log.hpp"
#include "rd_handles.hpp"

namespace kbus::kafka {

using detail::RdHeadersPtr;
using detail::RdKafkaPtr;

struct Producer::Impl {
  RdKafkaPtr rk;
  bool background = true;
  std::function<void()> reports_ready;
  detail::RdQueuePtr main_queue;  // watched for reports_ready

  static void OnQueueEvent(rd_kafka_t*, void* opaque) noexcept {
    try {
      static_cast<Impl*>(opaque)->reports_ready();
    } catch (...) {  // nothing may leave a C callback
    }
  }
  std::atomic<bool> stop{false};
  std::thread poller;

  // Runs on whichever thread serves the main queue; never lets an exception into librdkafka.
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) noexcept {
    auto* cb = static_cast<DeliveryCallback*>(m->_private);
    if (cb == nullptr) return;
    try {
      if (m->err) {
        (*cb)(Error(ErrorCode::kTransport,
                    std::string("delivery to '") + rd_kafka_topic_name(m->rkt) +
                        "' failed: " + rd_kafka_err2str(m->err),
                    m->err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
      } else {
        (*cb)(Ok());
      }
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "delivery callback threw", {{"error", e.what()}});
    } catch (...) {
    }
    delete cb;
  }
};

Producer::Producer(const ProducerConfig& config) : impl_(std::make_unique<Impl>()) {
  auto props = ProducerProperties(config);
  for (const auto& [k, v] : config.client.properties) props[k] = v;
  auto conf = detail::MakeConf(props);
  detail::RouteLogs(conf.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::OnDelivery);
  impl_->rk = detail::NewHandle(RD_KAFKA_PRODUCER, conf);
  impl_->background = config.background_poll;
  if (!impl_->background && config.reports_ready) {
    impl_->reports_ready = config.reports_ready;
    impl_->main_queue.reset(rd_kafka_queue_get_main(impl_->rk.get()));
    rd_kafka_queue_cb_event_enable(impl_->main_queue.get(), &Impl::OnQueueEvent, impl_.get());
  }
  if (impl_->background) {
    impl_->poller = std::thread([impl = impl_.get()] {
      while (!impl->stop.load(std::memory_order_relaxed)) rd_kafka_poll(impl->rk.get(), 50);
    });
  }
}

Producer::~Producer() {
  if (impl_->main_queue) rd_kafka_queue_cb_event_enable(impl_->main_queue.get(), nullptr, nullptr);
  if (impl_->poller.joinable()) {
    impl_->stop = true;
    impl_->poller.join();
  }
  if (rd_kafka_flush(impl_->rk.get(), 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Log(LogLevel::kError, "producer closed with records not acknowledged",
        {{"records", rd_kafka_outq_len(impl_->rk.get())}});
  }
}

Status Producer::Produce(const OutgoingRecord& record, DeliveryCallback done) {
  RdHeadersPtr headers(rd_kafka_headers_new(record.headers.size()));
  for (const auto& h : record.headers) {
    rd_kafka_header_add(headers.get(), h.name.data(), static_cast<ssize_t>(h.name.size()),
                        h.value.data(), static_cast<ssize_t>(h.value.size()));
  }
  auto* cb = done ? new DeliveryCallback(std::move(done)) : nullptr;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        impl_->rk.get(), RD_KAFKA_V_TOPIC(record.topic.c_str()),
        RD_KAFKA_V_KEY(record.key.empty() ? nullptr : record.key.data(), record.key.size()),
        RD_KAFKA_V_PARTITION(record.partition < 0 ? RD_KAFKA_PARTITION_UA : record.partition),
        RD_KAFKA_V_VALUE(record.tombstone ? nullptr : const_cast<char*>(record.payload.data()),
                         record.tombstone ? 0 : record.payload.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers.get()),
        RD_KAFKA_V_OPAQUE(cb), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      headers.release();  // owned by the queued message now
      return Ok();
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && std::chrono::steady_clock::now() < deadline) {
      // Back-pressure: wait for deliveries to drain the queue.
      if (impl_->background) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else {
        rd_kafka_poll(impl_->rk.get(), 5);
      }
      continue;
    }
    delete cb;
    return Error(ErrorCode::kTransport,
                 "cannot queue a record for '" + record.topic + "': " + rd_kafka_err2str(err) +
                     (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                          ? " (raise message.max.bytes with -X, and the broker's limit)"
                          : ""),
                 err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
  }
}

Status Producer::SendSync(const OutgoingRecord& record, std::chrono::milliseconds timeout) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
  };
  auto waiter = std::make_shared<Waiter>();
  Status queued = Produce(record, [waiter](const Status& s) {
    std::lock_guard lock(waiter->mu);
    waiter->status = s;
    waiter->done = true;
    waiter->cv.notify_all();
  });
  if (!queued.ok()) return queued;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(waiter->mu);
  while (!waiter->done) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error(ErrorCode::kTimeout, "no acknowledgement for the record to '" + record.topic +
                                            "' within " + std::to_string(timeout.count()) +
                                            " ms: is the broker reachable?",
                   true);
    }
    if (impl_->background) {
      waiter->cv.wait_until(lock, deadline);
    } else {
      lock.unlock();
      rd_kafka_poll(impl_->rk.get(), 10);
      lock.lock();
    }
  }
  return waiter->status;
}

int Producer::Poll(std::chrono::milliseconds timeout) {
  return rd_kafka_poll(impl_->rk.get(), static_cast<int>(timeout.count()));
}

Status Producer::Flush(std::chrono::milliseconds timeout) {
  const rd_kafka_resp_err_t err = rd_kafka_flush(impl_->rk.get(), static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTimeout,
                 std::to_string(rd_kafka_outq_len(impl_->rk.get())) +
                     " records still unacknowledged after " + std::to_string(timeout.count()) + " ms",
                 true);
  }
  return Ok();
}

int Producer::InFlight() const { return rd_kafka_outq_len(impl_->rk.get()); }

Status Producer::LearnTopics(std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(impl_->rk.get(), /*all_topics=*/1, nullptr, &md, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport, std::string("cannot learn the cluster's topics: ") + rd_kafka_err2str(err), true);
  }
  rd_kafka_metadata_destroy(md);  // librdkafka keeps what it learned in its metadata cache
  return Ok();
}

}  // namespace kbus::kafka
