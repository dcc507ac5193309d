// The embedded broker itself: a fixed bootstrap port through the relay, and clean failure when
// that port is taken.

#include "kbus/kafka/embedded_broker.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/producer.hpp"
#include "test_broker.hpp"

namespace {

// Binds a loopback port and keeps it until destroyed.
struct HeldPort {
  int fd = -1;
  int port = 0;
  HeldPort() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot bind a loopback port");
    }
    port = ntohs(addr.sin_port);
  }
  void Release() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  ~HeldPort() { Release(); }
};

TEST(EmbeddedBroker, RefusesATakenPortWithAnErrorInsteadOfCrashing) {
  HeldPort taken;
  try {
    kbus::kafka::EmbeddedBroker broker({.port = taken.port});
    FAIL() << "started on a port that is in use";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("127.0.0.1:" + std::to_string(taken.port)));
  }
}

TEST(EmbeddedBroker, ClientsReachItThroughAFixedPort) {
  HeldPort free_port;
  const int port = free_port.port;
  free_port.Release();
  kbus::kafka::EmbeddedBroker broker({.port = port});
  ASSERT_EQ(broker.bootstrap(), "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(broker.CreateTopic("fixed-port", 3).ok());
  EXPECT_EQ(broker.CreateTopic("fixed-port", 3).error().code(), kbus::ErrorCode::kAlreadyExists);

  kbus::kafka::ClientConfig client{.brokers = broker.bootstrap()};
  auto topics = kbus::kafka::ListTopics(client);
  ASSERT_TRUE(topics.ok()) << topics.error().ToString();
  bool found = false;
  for (const auto& t : *topics) found |= t.name == "fixed-port" && t.partitions == 3;
  EXPECT_TRUE(found);

  // A record sent through the fixed address arrives.
  kbus::kafka::Producer producer({.client = client});
  kbus::OutgoingRecord r{.topic = "fixed-port", .key = "k", .payload = "{}", .headers = {}};
  ASSERT_TRUE(producer.SendSync(r).ok());
  EXPECT_EQ(kbus::test::ReadTopic(broker.bootstrap(), "fixed-port", 1).size(), 1u);
}

TEST(EmbeddedBroker, CreateTopicsThroughTheAdminApiPointsToTheBrokerFlag) {
  kbus::kafka::EmbeddedBroker broker;
  kbus::Status s = kbus::kafka::CreateTopics({.brokers = broker.bootstrap()}, {{"x", 2}}, true,
                                             std::chrono::seconds(2));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), kbus::ErrorCode::kTimeout);
  EXPECT_THAT(s.error().message(), ::testing::HasSubstr("kbus broker --topic"));
}

}  // namespace
