#pragma once
// The payload `kbus send` and `kbus schedules create` read from stdin (PAYLOAD omitted or "-").

#include <string>

#include "kbus/result.hpp"

namespace kbus::cli {

// All of stdin, without the trailing whitespace (the newline `echo` or a heredoc appends is no
// part of the message). kInternal when stdin cannot be read.
Result<std::string> ReadPayloadFromStdin();

}  // namespace kbus::cli
