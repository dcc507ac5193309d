#include "kbus/kafka/embedded_broker.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stdexcept>

#include "kbus/log.hpp"
#include "rd_handles.hpp"
#include "tcp_relay.hpp"

namespace kbus::kafka {

struct EmbeddedBroker::Impl {
  // Teardown order matters: the relay, then the cluster, then the handle whose threads run it
  // (librdkafka aborts when the handle goes first). An explicit destructor keeps that order
  // also when the constructor throws half-way, e.g. because the relay's port is taken.
  ~Impl() {
    relay.reset();
    if (cluster != nullptr) rd_kafka_mock_cluster_destroy(cluster);
  }
  detail::RdKafkaPtr rk;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  std::string bootstrap;
  std::unique_ptr<detail::TcpRelay> relay;
};

namespace {
// The mock cluster logs from its own thread and nobody polls this handle's queue, so this one
// trampoline writes directly: it does nothing but format a log line, and never throws.
void BrokerLog(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept {
  try {
    Log(level <= 3 ? LogLevel::kError : LogLevel::kWarn, buf,
        {{"component", "embedded-broker"}, {"facility", fac}});
  } catch (...) {
  }
}
}  // namespace

EmbeddedBroker::EmbeddedBroker(Options options) : impl_(std::make_unique<Impl>()) {
  if (options.brokers < 1) throw std::invalid_argument("embedded broker: brokers must be >= 1");
  auto conf = detail::MakeConf({{"log_level", "4"}});
  rd_kafka_conf_set_log_cb(conf.get(), &BrokerLog);
  impl_->rk = detail::NewHandle(RD_KAFKA_PRODUCER, conf);
  impl_->cluster = rd_kafka_mock_cluster_new(impl_->rk.get(), options.brokers);
  if (impl_->cluster == nullptr) throw std::runtime_error("cannot start the embedded broker");
  impl_->bootstrap = rd_kafka_mock_cluster_bootstraps(impl_->cluster);
  if (options.port != 0) {
    // First advertised broker, "127.0.0.1:NNNNN".
    const std::string first = impl_->bootstrap.substr(0, impl_->bootstrap.find(','));
    const auto colon = first.rfind(':');
    impl_->relay = std::make_unique<detail::TcpRelay>(options.port, first.substr(0, colon),
                                                      std::stoi(first.substr(colon + 1)));
    impl_->bootstrap = "127.0.0.1:" + std::to_string(options.port);
  }
}

EmbeddedBroker::~EmbeddedBroker() = default;

const std::string& EmbeddedBroker::bootstrap() const { return impl_->bootstrap; }

Status EmbeddedBroker::CreateTopic(std::string_view name, int partitions) {
  if (name.empty() || partitions < 1) {
    return Error(ErrorCode::kInvalidArgument, "a topic needs a name and at least one partition");
  }
  const std::string topic(name);
  const rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(impl_->cluster, topic.c_str(), partitions, 1);
  if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return Error(ErrorCode::kAlreadyExists, "topic '" + topic + "' already exists");
  }
  if (err) {
    return Error(ErrorCode::kTransport,
                 "cannot create topic '" + topic + "': " + rd_kafka_err2str(err));
  }
  return Ok();
}

rd_kafka_mock_cluster_s* EmbeddedBroker::mock_cluster() const { return impl_->cluster; }

std::unique_ptr<EmbeddedBroker> StartEmbeddedIfRequested(std::string& brokers) {
  if (brokers != "embedded") return nullptr;
  auto broker = std::make_unique<EmbeddedBroker>();
  brokers = broker->bootstrap();
  Log(LogLevel::kInfo, "started an embedded broker in this process", {{"bootstrap", brokers}});
  return broker;
}

}  // namespace kbus::kafka
