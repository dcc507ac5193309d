#pragma once
// The operations port: /healthz, /readyz and /metrics over HTTP (docs/operations.md).
//
//   kbus::metrics::Registry metrics;
//   kbus::health::Board health;
//   kbus::ops::Server server({.port = 8080}, metrics, health);  // serving until destroyed
//
// /healthz answers 200 while every component is live and 503 otherwise; /readyz 200 while
// every component is ready and the process is not shutting down, else 503; both with the
// board's JSON. /metrics answers the registry in the Prometheus text format. Anything else is
// 404; a method other than GET or HEAD is 405.
//
// Thread safety: requests are served on the server's own threads (two); the registry and the
// board are thread-safe. The constructor and destructor run on the owner's thread.

#include <memory>
#include <string>

#include "kbus/health.hpp"
#include "kbus/metrics.hpp"

namespace kbus::ops {

struct ServerConfig {
  std::string bind_address = "0.0.0.0";
  // The TCP port; 0 picks a free one (port() tells which), for tests.
  int port = 0;
  // Named in errors: the flag or variable the port came from ("--http-port", "KBUS_HTTP_PORT").
  std::string origin = "--http-port";
};

class Server {
 public:
  // Binds and starts serving. Throws std::runtime_error when the port cannot be bound (in use,
  // not allowed), naming the port and `config.origin`.
  Server(ServerConfig config, metrics::Registry& metrics, health::Board& health);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// GETs http://host:port/path with short timeouts: {status, body}; status 0 when nothing
// answered (refused, timed out). For `kbus health` and container health checks.
struct ProbeResult {
  int status = 0;
  std::string body;
  std::string error;  // why status is 0
};
ProbeResult Get(const std::string& host, int port, const std::string& path);

}  // namespace kbus::ops
