#include "stdin_payload.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace kbus::cli {

Result<std::string> ReadPayloadFromStdin() {
  std::string text;
  std::array<char, 65536> buffer;
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(ErrorCode::kInternal, std::string("cannot read the payload from stdin: ") + std::strerror(errno));
    }
    text.append(buffer.data(), static_cast<std::size_t>(n));
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) {
    text.pop_back();
  }
  return text;
}

}  // namespace kbus::cli
