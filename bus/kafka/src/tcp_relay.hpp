#pragma once
// A loopback TCP relay: listens on 127.0.0.1:port and forwards each connection to a target
// address. The embedded broker uses it to offer a fixed bootstrap port, since librdkafka 2.0.2's
// mock cluster binds only ephemeral ports. Only bootstrap traffic passes through it: the
// broker's metadata advertises its real addresses, and clients connect there directly.

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kbus::kafka::detail {

class TcpRelay {
 public:
  // Throws std::runtime_error when the port cannot be bound (the message names the port).
  TcpRelay(int listen_port, std::string target_host, int target_port);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

 private:
  void AcceptLoop();
  void Pump(int client_fd);

  int listen_fd_ = -1;
  std::string target_host_;
  int target_port_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<int> open_fds_;  // guarded by mu_; shut down on destruction to end pump threads
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

}  // namespace kbus::kafka::detail
