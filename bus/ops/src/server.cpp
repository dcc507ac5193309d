#include "kbus/ops/server.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace kbus::ops {

namespace {
constexpr std::string_view kJson = "application/json";
}  // namespace

struct Server::Impl {
  metrics::Registry& metrics;
  health::Board& health;
  httplib::Server http;
  std::thread thread;
  std::atomic<bool> listening_ended{false};  // set by `thread` when listen_after_bind returns
  int port = 0;
  std::mutex scrape_mu;  // one scrape renders at a time, into a buffer kept between scrapes
  std::string scrape;

  Impl(metrics::Registry& m, health::Board& h) : metrics(m), health(h) {}

  void Health(const httplib::Request&, httplib::Response& res, bool readiness) {
    const auto answer = health.Check();
    const bool ok = readiness ? answer.ready && answer.live : answer.live;
    res.status = ok ? 200 : 503;
    res.set_content(answer.json + "\n", std::string(kJson).c_str());
  }

  void Metrics(const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(scrape_mu);
    scrape.clear();
    metrics.RenderTo(scrape);
    res.status = 200;
    res.set_content(scrape, std::string(metrics::kContentType).c_str());
  }
};

Server::Server(ServerConfig config, metrics::Registry& metrics, health::Board& health)
    : impl_(std::make_unique<Impl>(metrics, health)) {
  auto& http = impl_->http;
  // Probes and scrapes are rare and quick: two threads, not the library's default pool.
  http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  http.set_keep_alive_max_count(10);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  // cpp-httplib sets SO_REUSEPORT by default, so a second process of the same user binding the
  // same port succeeds and the kernel shares connections between the two: a port already in use
  // would never be an error. SO_REUSEADDR alone still lets a restarted process bind at once.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  Impl* impl = impl_.get();
  http.Get("/healthz", [impl](const httplib::Request& req, httplib::Response& res) { impl->Health(req, res, false); });
  http.Get("/readyz", [impl](const httplib::Request& req, httplib::Response& res) { impl->Health(req, res, true); });
  http.Get("/metrics", [impl](const httplib::Request& req, httplib::Response& res) { impl->Metrics(req, res); });
  for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
    const auto refuse = [](const httplib::Request&, httplib::Response& res) {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
    };
    http.Post(path, refuse);
    http.Put(path, refuse);
    http.Delete(path, refuse);
    http.Patch(path, refuse);
  }

  if (config.port < 0 || config.port > 65535) {
    throw std::runtime_error(config.origin + " " + std::to_string(config.port) + ": not a TCP port (1-65535)");
  }
  errno = 0;
  int bound = -1;
  if (config.port == 0) {
    bound = http.bind_to_any_port(config.bind_address.c_str());
  } else if (http.bind_to_port(config.bind_address.c_str(), config.port)) {
    bound = config.port;
  }
  if (bound <= 0) {
    const int err = errno;
    throw std::runtime_error(config.origin + " " + std::to_string(config.port) + ": cannot listen on " +
                             config.bind_address + ":" + std::to_string(config.port) +
                             (err ? std::string(" (") + std::strerror(err) + ")" : std::string()) +
                             ": choose a free port");
  }
  impl_->port = bound;
  impl_->thread = std::thread([impl] {
    impl->http.listen_after_bind();
    impl->listening_ended.store(true);
  });
}

Server::~Server() {
  // httplib's stop() does nothing until the listening thread has marked itself running, so a
  // server destroyed right after it was made would wait for ever: stop once it runs (or ended).
  while (!impl_->listening_ended.load()) {
    if (impl_->http.is_running()) {
      impl_->http.stop();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::port() const { return impl_->port; }

ProbeResult Get(const std::string& host, int port, const std::string& path) {
  httplib::Client client(host, port);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  ProbeResult r;
  auto res = client.Get(path);
  if (!res) {
    r.error = httplib::to_string(res.error());
    return r;
  }
  r.status = res->status;
  r.body = res->body;
  return r;
}

}  // namespace kbus::ops
