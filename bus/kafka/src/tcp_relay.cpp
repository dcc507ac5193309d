#include "tcp_relay.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "kbus/log.hpp"

namespace kbus::kafka::detail {

TcpRelay::TcpRelay(int listen_port, std::string target_host, int target_port)
    : target_host_(std::move(target_host)), target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int on = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(listen_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    throw std::runtime_error("cannot listen on 127.0.0.1:" + std::to_string(listen_port) + ": " +
                             std::strerror(e) + " (is another broker using --port?)");
  }
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

TcpRelay::~TcpRelay() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  {
    std::lock_guard lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : pumps_) t.join();
}

void TcpRelay::AcceptLoop() {
  while (!stop_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    std::lock_guard lock(mu_);
    open_fds_.push_back(fd);
    pumps_.emplace_back([this, fd] { Pump(fd); });
  }
}

void TcpRelay::Pump(int client_fd) {
  const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(target_port_));
  ::inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
  int on = 1;
  ::setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  ::setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (upstream >= 0 && ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    {
      std::lock_guard lock(mu_);
      open_fds_.push_back(upstream);
    }
    pollfd fds[2] = {{client_fd, POLLIN, 0}, {upstream, POLLIN, 0}};
    char buf[64 * 1024];
    bool open = true;
    while (open && !stop_) {
      if (::poll(fds, 2, 500) < 0 && errno != EINTR) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          open = false;
          break;
        }
        const int out = fds[1 - i].fd;
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = ::write(out, buf + done, static_cast<size_t>(n - done));
          if (w <= 0) {
            open = false;
            break;
          }
          done += w;
        }
      }
    }
  } else {
    Log(LogLevel::kWarn, "relay cannot reach the embedded broker", {{"error", std::strerror(errno)}});
  }
  std::lock_guard lock(mu_);
  for (int fd : {client_fd, upstream}) {
    if (fd < 0) continue;
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
    ::close(fd);
  }
}

}  // namespace kbus::kafka::detail
