#include "kbus/ops/server.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using kbus::health::Board;
using kbus::health::ProbeHandle;
using kbus::health::Report;
using kbus::ops::Server;
using kbus::ops::ServerConfig;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A server on a free loopback port with a registry and a board of its own.
struct Served {
  kbus::metrics::Registry metrics;
  Board health;
  Server server{ServerConfig{.bind_address = "127.0.0.1", .port = 0}, metrics, health};
  httplib::Client Client() const {
    httplib::Client c("127.0.0.1", server.port());
    c.set_connection_timeout(2, 0);
    c.set_read_timeout(5, 0);
    return c;
  }
};

// The message of the std::runtime_error `f` throws, or "" when it throws none.
template <class F>
std::string RuntimeError(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// A plain socket listening on a free loopback port, without SO_REUSEPORT: another program.
class Squatter {
 public:
  Squatter() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 1) != 0) {
      throw std::runtime_error("cannot listen on a free loopback port");
    }
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Squatter() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(OpsServer, BindsAFreePortWhenAskedForPortZero) {
  Served s;
  EXPECT_GT(s.server.port(), 0);
  EXPECT_LE(s.server.port(), 65535);
}

TEST(OpsServer, ServesTheRegistryOnMetricsInTheTextFormat) {
  Served s;
  s.metrics.AddCounter("kbus_records_received_total", "Records received.", {"topic"}).With({"t"}).Inc(7);
  auto res = s.Client().Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_EQ(res->body, s.metrics.Render());
  EXPECT_THAT(res->body, HasSubstr("kbus_records_received_total{topic=\"t\"} 7\n"));
}

TEST(OpsServer, AnswersHeadOnMetricsWithoutABody) {
  Served s;
  s.metrics.AddCounter("kbus_h_total", "h");
  auto res = s.Client().Head("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(res->body.empty());
}

TEST(OpsServer, HealthzIsOkWhileLiveAnd503OtherwiseWithTheBoardsJson) {
  Served s;
  bool live = true;
  ProbeHandle h = s.health.Add("worker", [&] { return Report{.live = live, .ready = live}; });
  auto ok = s.Client().Get("/healthz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(ok->body, s.health.Check().json + "\n");
  live = false;
  auto bad = s.Client().Get("/healthz");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 503);
  EXPECT_THAT(bad->body, HasSubstr("\"status\":\"unhealthy\""));
}

TEST(OpsServer, ReadyzIs503WithoutProbesThenOkThen503WhileShuttingDown) {
  Served s;
  auto none = s.Client().Get("/readyz");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 503);
  EXPECT_THAT(none->body, HasSubstr("\"status\":\"not_ready\""));

  ProbeHandle h = s.health.Add("worker", [] { return Report{}; });
  auto ready = s.Client().Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_THAT(ready->body, HasSubstr("\"status\":\"ok\""));

  s.health.SetShuttingDown();
  auto leaving = s.Client().Get("/readyz");
  ASSERT_TRUE(leaving);
  EXPECT_EQ(leaving->status, 503);
  EXPECT_THAT(leaving->body, HasSubstr("\"status\":\"shutting_down\""));
  auto live = s.Client().Get("/healthz");  // still live: a restart would cure nothing
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
}

TEST(OpsServer, ReadyzIs503WhenAComponentIsNotLiveEvenIfItSaysReady) {
  Served s;
  ProbeHandle h = s.health.Add("worker", [] { return Report{.live = false, .ready = true}; });
  auto res = s.Client().Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
}

TEST(OpsServer, AnswersOtherPaths404) {
  Served s;
  for (const char* path : {"/", "/metric", "/metrics/x", "/healthz/", "/api/v1/query"}) {
    auto res = s.Client().Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
  }
}

TEST(OpsServer, AnswersOtherMethods405WithAllow) {
  Served s;
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    auto post = s.Client().Post(path, "x", "text/plain");
    ASSERT_TRUE(post) << path;
    EXPECT_EQ(post->status, 405) << path;
    EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD") << path;
    auto put = s.Client().Put(path, "x", "text/plain");
    ASSERT_TRUE(put) << path;
    EXPECT_EQ(put->status, 405) << path;
    auto del = s.Client().Delete(path);
    ASSERT_TRUE(del) << path;
    EXPECT_EQ(del->status, 405) << path;
  }
}

TEST(OpsServer, APortInUseByAnotherProgramIsAnErrorNamingThePortAndItsOrigin) {
  Squatter other;
  kbus::metrics::Registry m;
  Board b;
  const std::string port = std::to_string(other.port());
  const std::string error = RuntimeError([&] {
    Server s({.bind_address = "127.0.0.1", .port = other.port(), .origin = "KBUS_HTTP_PORT"}, m, b);
  });
  EXPECT_THAT(error, StartsWith("KBUS_HTTP_PORT " + port + ": cannot listen on 127.0.0.1:" + port));
  EXPECT_THAT(error, HasSubstr("Address already in use"));
  EXPECT_THAT(error, HasSubstr("choose a free port"));
}

// cpp-httplib's default socket options include SO_REUSEPORT, with which a second server of the
// same user binds the same port and silently shares its connections.
TEST(OpsServer, APortInUseByAnotherKbusServerIsAnErrorToo) {
  Served first;
  kbus::metrics::Registry m;
  Board b;
  const std::string port = std::to_string(first.server.port());
  EXPECT_THAT(RuntimeError([&] {
                Server s({.bind_address = "127.0.0.1", .port = first.server.port(), .origin = "--http-port"}, m, b);
              }),
              StartsWith("--http-port " + port + ": cannot listen on 127.0.0.1:" + port));
}

TEST(OpsServer, RefusesAPortOutsideTheTcpRangeNamingItsOrigin) {
  kbus::metrics::Registry m;
  Board b;
  for (int port : {-1, 65536}) {
    EXPECT_EQ(RuntimeError([&] { Server s({.port = port, .origin = "--http-port"}, m, b); }),
              "--http-port " + std::to_string(port) + ": not a TCP port (1-65535)");
  }
}

TEST(OpsServer, ReleasesItsPortWhenDestroyedSoAnotherServerCanBindIt) {
  kbus::metrics::Registry m;
  Board b;
  int port = 0;
  { port = Server({.bind_address = "127.0.0.1", .port = 0}, m, b).port(); }
  Server again({.bind_address = "127.0.0.1", .port = port}, m, b);
  EXPECT_EQ(again.port(), port);
  EXPECT_EQ(kbus::ops::Get("127.0.0.1", port, "/readyz").status, 503);
}

// A server destroyed right after it was made (a program failing its start-up just after) must
// not wait for ever for its listening thread.
TEST(OpsServer, IsDestroyedPromptlyRightAfterItWasMade) {
  kbus::metrics::Registry m;
  Board b;
  for (int i = 0; i < 200; ++i) {
    Server s({.bind_address = "127.0.0.1", .port = 0}, m, b);
  }
}

TEST(OpsServer, ServesConcurrentScrapesWhileSeriesChange) {
  Served s;
  auto& c = s.metrics.AddCounter("kbus_busy_total", "h", {"n"});
  for (int i = 0; i < 200; ++i) c.With({std::to_string(i)}).Inc();
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) c.With({std::to_string(i % 400)}).Inc();
  });
  std::vector<std::thread> scrapers;
  std::atomic<int> good{0};
  for (int t = 0; t < 3; ++t) {
    scrapers.emplace_back([&] {
      auto client = s.Client();
      for (int i = 0; i < 20; ++i) {
        auto res = client.Get("/metrics");
        if (res && res->status == 200 && res->body.starts_with("# HELP kbus_busy_total h\n") &&
            res->body.ends_with("\n")) {
          good.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : scrapers) t.join();
  stop.store(true);
  writer.join();
  EXPECT_EQ(good.load(), 60);
}

TEST(OpsGet, ReturnsTheStatusAndBody) {
  Served s;
  ProbeHandle h = s.health.Add("worker", [] { return Report{}; });
  const kbus::ops::ProbeResult r = kbus::ops::Get("127.0.0.1", s.server.port(), "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, StartsWith("{\"status\":\"ok\""));
  EXPECT_TRUE(r.error.empty());
}

TEST(OpsGet, ReturnsStatusZeroAndWhyWhenNothingAnswers) {
  int port = 0;
  {
    Served s;
    port = s.server.port();
  }
  const kbus::ops::ProbeResult r = kbus::ops::Get("127.0.0.1", port, "/healthz");
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.error.empty());
}

}  // namespace
