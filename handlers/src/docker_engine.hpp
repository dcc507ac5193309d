#pragma once
// A client of the Docker Engine API over its unix socket (libcurl): plain requests, and a
// streamed GET that a run follows while it waits for ticks and its control's eventfd.
//
// Thread safety: an Engine holds only the socket path; each call uses a handle of its own, so
// calls may come from any number of threads at once.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "kbus/result.hpp"

namespace kbus::handlers::detail {

struct EngineReply {
  long status = 0;   // the HTTP status
  std::string body;  // at most kMaxReplyBytes kept
  // The engine's "message" from an error body, else the body's start: for errors.
  std::string Message() const;
};

class Engine {
 public:
  static constexpr std::size_t kMaxReplyBytes = 8 << 20;
  static constexpr const char* kApiVersion = "v1.41";  // Docker 20.10; newer engines speak it too

  explicit Engine(std::string socket_path);
  const std::string& socket_path() const { return socket_; }

  // One request; `path` without the version ("/containers/json?all=1"). A transport failure (no
  // engine at the socket, a timeout) is an error; any HTTP status is a reply.
  Result<EngineReply> Call(std::string_view method, std::string_view path, std::string_view json_body = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

  // A streamed GET: `data` gets the body as it comes. Between reads `poll` is called at least
  // every `tick` and whenever `wake_fd` (if >= 0) is readable; it returns false to end the
  // stream early. Returns the HTTP status once the body ended or `poll` stopped it.
  Result<long> Stream(std::string_view path, const std::function<void(std::string_view)>& data,
                      const std::function<bool()>& poll, int wake_fd, std::chrono::milliseconds tick) const;

  // "%2F"-style escaping for a query value.
  static std::string Escape(std::string_view text);

 private:
  std::string Url(std::string_view path) const;
  std::string socket_;
};

}  // namespace kbus::handlers::detail
