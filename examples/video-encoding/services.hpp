#pragma once
// The video service's processes as classes, so that the demo and the tests run exactly what
// the binaries run: EncodeService hosts EncodeVideoWorkflow in a worker group; LauncherService
// is what kbus-launcher runs (the same Launcher, in this process).
//
// Each reports to one metrics registry and health board with its worker (the config's, or its
// own), so the worker's --http-port serves the workflow's or the launcher's metrics and probe
// too (docs/operations.md).
//
// Thread safety: Run() on one thread; Stop() from any thread or a signal handler.

#include <algorithm>
#include <chrono>
#include <memory>
#include <memory>
#include <string>
#include <utility>

#include "encode_workflow.hpp"
#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/producer_sink.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/state_topic.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/workflows/kafka.hpp"

namespace video {

inline kbus::kafka::ProducerConfig EventProducerConfig(const kbus::kafka::ClientConfig& client) {
  kbus::kafka::ProducerConfig p;
  p.client = client;
  p.linger = std::chrono::milliseconds(0);  // few records, each waited for
  return p;
}

class EncodeService {
 public:
  EncodeService(kbus::kafka::WorkerConfig config, EncodeSettings settings)
      : metrics_(config.metrics ? config.metrics : std::make_shared<kbus::metrics::Registry>()),
        health_(config.health ? config.health : std::make_shared<kbus::health::Board>()),
        workflow_(EncodeVideoWorkflow(std::move(settings))),
        state_(config.client, workflow_.options().state_topic),
        store_(state_),
        producer_(EventProducerConfig(config.client)),
        host_(workflow_, HostConfig(config), store_) {
    host_.Register(handlers_);
    host_.ReportTo(*metrics_, *health_);
    kbus::workflows::Attach(host_, config);
    config.metrics = metrics_;
    config.health = health_;
    worker_ = std::make_unique<kbus::kafka::Worker>(config, handlers_);
  }

  void Run() {
    host_.Start();
    worker_->Run();
    host_.Stop();
  }
  void Stop() noexcept { worker_->Stop(); }

  kbus::workflows::WorkflowHost& host() { return host_; }
  kbus::kafka::Worker& worker() { return *worker_; }
  kbus::health::Board& health() { return *health_; }
  const std::string& input_topic() const { return workflow_.options().input_topic; }

 private:
  kbus::workflows::HostConfig HostConfig(const kbus::kafka::WorkerConfig& config) {
    kbus::workflows::HostConfig h;
    h.group = config.group;
    h.host = config.host;
    h.send = kbus::workflows::SendWith(producer_);
    return h;
  }

  // First: the host and the worker report here until they are gone.
  std::shared_ptr<kbus::metrics::Registry> metrics_;
  std::shared_ptr<kbus::health::Board> health_;
  kbus::workflows::Workflow<kbus::workflows::DelegatedState> workflow_;
  kbus::kafka::StateTopic state_;
  kbus::workflows::KafkaStateStore store_;
  kbus::kafka::Producer producer_;
  kbus::workflows::WorkflowHost host_;
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<kbus::kafka::Worker> worker_;
};

class LauncherService {
 public:
  // `config.group` is the launcher group; the launch and control topics are the defaults.
  LauncherService(kbus::kafka::WorkerConfig config, kbus::handlers::AllowList allow,
                  kbus::handlers::LauncherConfig launcher_config,
                  std::string launch_topic = std::string(kbus::handlers::kLauncherTopic),
                  std::string control_topic = std::string(kbus::handlers::kLauncherControlTopic))
      : metrics_(config.metrics ? config.metrics : std::make_shared<kbus::metrics::Registry>()),
        health_(config.health ? config.health : std::make_shared<kbus::health::Board>()),
        producer_(EventProducerConfig(config.client)),
        sink_(producer_),
        launcher_(std::move(launcher_config), std::move(allow), backend_, sink_) {
    launcher_.ReportTo(*metrics_, *health_);
    config.metrics = metrics_;
    config.health = health_;
    config.assignment_strategy = "range";  // launch and control partition N together
    config.max_buffered_per_partition = std::min<std::size_t>(config.max_buffered_per_partition, 1000);
    kbus::HandlerOptions launch, control;
    launch.topic = std::move(launch_topic);
    control.topic = std::move(control_topic);
    launcher_.Register(handlers_, std::move(launch), std::move(control));
    worker_ = std::make_unique<kbus::kafka::Worker>(config, handlers_);
  }

  void Run() {
    worker_->Run();
    launcher_.Shutdown();
    (void)producer_.Flush(std::chrono::seconds(10));
  }
  void Stop() noexcept { worker_->Stop(); }
  kbus::handlers::Launcher& launcher() { return launcher_; }
  kbus::kafka::Worker& worker() { return *worker_; }

 private:
  // First: the launcher and the worker report here until they are gone.
  std::shared_ptr<kbus::metrics::Registry> metrics_;
  std::shared_ptr<kbus::health::Board> health_;
  kbus::kafka::Producer producer_;
  kbus::handlers::ProducerSink sink_;
  kbus::handlers::LocalProcessBackend backend_;
  kbus::handlers::Launcher launcher_;
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<kbus::kafka::Worker> worker_;
};

}  // namespace video
