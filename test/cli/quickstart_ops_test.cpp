// The quickstart worker as a process: its operations port through start-up and SIGTERM, a second
// signal that exits at once, and the errors of a bad or busy --http-port / KBUS_HTTP_PORT.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "child_process.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/ops/server.hpp"
#include "test_broker.hpp"

namespace {

using kbus::test::ChildProcess;
using kbus::test::ProcessResult;
using kbus::test::RunProcess;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::seconds;

// A loopback socket listening on a port of the kernel's choosing; closed on destruction.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof addr;
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && listen(fd_, 4) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~Listener() {
    if (fd_ >= 0) close(fd_);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port nothing listens on now.
int FreePort() { return Listener().port(); }

int Ready(int port) { return kbus::ops::Get("127.0.0.1", port, "/readyz").status; }

// A quickstart worker on the test broker in a group of its own, serving its port on `port`.
// Its topics are made first: a consumer whose subscribed topics do not exist (real Kafka here
// does not create them) never joins its group, so it never becomes ready.
ChildProcess StartWorker(int port) {
  if (!TestBroker::Get().embedded()) {  // the embedded broker makes them on first use
    kbus::kafka::ClientConfig client;
    client.brokers = TestBroker::Get().bootstrap();
    const kbus::Status made = kbus::kafka::CreateTopics(client, {{"shop.commands", 4}, {"shop.events", 4}});
    EXPECT_TRUE(made.ok()) << made.error().ToString();
  }
  return ChildProcess({KBUS_QUICKSTART_WORKER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group",
                       TestBroker::UniqueName("qs-ops"), "--http-port", std::to_string(port)});
}

TEST(QuickstartWorker, ServesReadinessUntilSigtermThenStopsCleanlyWithExitCodeZero) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  ChildProcess worker = StartWorker(port);
  ASSERT_TRUE(WaitFor([&] { return Ready(port) == 200; }, seconds(60)))
      << kbus::ops::Get("127.0.0.1", port, "/readyz").body;
  EXPECT_EQ(kbus::ops::Get("127.0.0.1", port, "/healthz").status, 200);
  EXPECT_NE(kbus::ops::Get("127.0.0.1", port, "/metrics").body.find("kbus_worker_records_handled_total{"),
            std::string::npos);

  worker.Kill(SIGTERM);
  // Not ready from the signal on (503), until the port closes with the process (0).
  EXPECT_TRUE(WaitFor([&] { return Ready(port) != 200; }, seconds(30)));
  const ProcessResult r = worker.Wait(seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Ready(port), 0) << "the port outlived the process";
}

TEST(QuickstartWorker, ASecondSignalExitsAtOnceWithItsNumber) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  ChildProcess worker = StartWorker(port);
  ASSERT_TRUE(WaitFor([&] { return Ready(port) == 200; }, seconds(60)));
  // Two different signals, so that the kernel cannot merge them into one as it does two of a
  // kind still pending; both arrive while the first one's graceful stop is under way (it takes
  // at least a poll turn and leaving the group). Either may be taken first.
  worker.Kill(SIGINT);
  worker.Kill(SIGTERM);
  const ProcessResult r = worker.Wait(seconds(30));
  EXPECT_TRUE(r.exit_code == 128 + SIGTERM || r.exit_code == 128 + SIGINT) << r.Describe();
}

TEST(QuickstartWorker, ABadHttpPortValueExitsTwoNamingTheVariable) {
  for (const std::string value : {"abc", "70000", "-5"}) {
    const ProcessResult r = RunProcess({KBUS_QUICKSTART_WORKER_PATH, "--brokers", "127.0.0.1:1"}, seconds(30), {},
                                       {"KBUS_HTTP_PORT=" + value});
    EXPECT_EQ(r.exit_code, 2) << value << ": " << r.Describe();
    EXPECT_NE(r.err.find("KBUS_HTTP_PORT"), std::string::npos) << value << ": " << r.Describe();
  }
}

TEST(QuickstartWorker, AnHttpPortInUseIsAnErrorNamingThePort) {
  Listener busy;
  ASSERT_GT(busy.port(), 0);
  const ProcessResult r = RunProcess(
      {KBUS_QUICKSTART_WORKER_PATH, "--brokers", "127.0.0.1:1", "--http-port", std::to_string(busy.port())},
      seconds(30));
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("--http-port (KBUS_HTTP_PORT) " + std::to_string(busy.port())), std::string::npos)
      << r.Describe();
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.Describe();
}

}  // namespace
