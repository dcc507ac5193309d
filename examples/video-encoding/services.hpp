#pragma once
// The video service's processes as classes, so that the demo and the tests run exactly what
// the binaries run: EncodeService hosts EncodeVideoWorkflow (and ThumbnailWorkflow) in one
// worker group; LauncherService is what kbus-launcher runs (the same Launcher, in this process).
//
// Each reports to one metrics registry and health board with its worker (the config's, or its
// own), so the worker's --http-port serves the workflow's or the launcher's metrics and probe
// too (docs/operations.md).
//
// Thread safety: Run() on one thread; Stop() from any thread or a signal handler.

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "encode_workflow.hpp"
#include "thumbnail_workflow.hpp"
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
  // Hosts EncodeVideoWorkflow, and with `thumbnails` ThumbnailWorkflow too, in one worker of
  // `config.group`: the two take the launcher's events each on its own input topic.
  EncodeService(kbus::kafka::WorkerConfig config, EncodeSettings settings,
                std::optional<ThumbnailSettings> thumbnails = std::nullopt)
      : metrics_(config.metrics ? config.metrics : std::make_shared<kbus::metrics::Registry>()),
        health_(config.health ? config.health : std::make_shared<kbus::health::Board>()),
        producer_(EventProducerConfig(config.client)),
        encode_(EncodeVideoWorkflow(settings), config, HostConfig(config)) {
    if (thumbnails) {
      thumbnail_ = std::make_unique<Hosted>(ThumbnailWorkflow(settings, std::move(*thumbnails)), config,
                                            HostConfig(config));
    }
    for (Hosted* h : {&encode_, thumbnail_.get()}) {
      if (h == nullptr) continue;
      h->host.Register(handlers_);
      h->host.ReportTo(*metrics_, *health_);
      kbus::workflows::Attach(h->host, config);
    }
    config.metrics = metrics_;
    config.health = health_;
    worker_ = std::make_unique<kbus::kafka::Worker>(config, handlers_);
  }

  void Run() {
    encode_.host.Start();
    if (thumbnail_) thumbnail_->host.Start();
    worker_->Run();
    if (thumbnail_) thumbnail_->host.Stop();
    encode_.host.Stop();
  }
  void Stop() noexcept { worker_->Stop(); }

  kbus::workflows::WorkflowHost& host() { return encode_.host; }
  // The thumbnail workflow's host, or nullptr when this service hosts none.
  kbus::workflows::WorkflowHost* thumbnail_host() { return thumbnail_ ? &thumbnail_->host : nullptr; }
  kbus::kafka::Worker& worker() { return *worker_; }
  kbus::health::Board& health() { return *health_; }
  const std::string& input_topic() const { return encode_.workflow.options().input_topic; }

 private:
  // One workflow with its state store and host.
  struct Hosted {
    Hosted(kbus::workflows::Workflow<kbus::workflows::DelegatedState> wf, const kbus::kafka::WorkerConfig& config,
           kbus::workflows::HostConfig host_config)
        : workflow(std::move(wf)),
          state(config.client, workflow.options().state_topic),
          store(state),
          host(workflow, std::move(host_config), store) {}
    kbus::workflows::Workflow<kbus::workflows::DelegatedState> workflow;
    kbus::kafka::StateTopic state;
    kbus::workflows::KafkaStateStore store;
    kbus::workflows::WorkflowHost host;
  };

  kbus::workflows::HostConfig HostConfig(const kbus::kafka::WorkerConfig& config) {
    kbus::workflows::HostConfig h;
    h.group = config.group;
    h.host = config.host;
    h.send = kbus::workflows::SendWith(producer_);
    return h;
  }

  // First: the hosts and the worker report here until they are gone.
  std::shared_ptr<kbus::metrics::Registry> metrics_;
  std::shared_ptr<kbus::health::Board> health_;
  kbus::kafka::Producer producer_;  // the hosts' timeouts; outlives them
  Hosted encode_;
  std::unique_ptr<Hosted> thumbnail_;
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
