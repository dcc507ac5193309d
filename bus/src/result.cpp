#include "kbus/result.hpp"

namespace kbus {

std::string_view ToString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kDecode: return "decode";
    case ErrorCode::kUnknownType: return "unknown type";
    case ErrorCode::kTransport: return "transport";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kAlreadyExists: return "already exists";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Error::ToString() const {
  std::string out(kbus::ToString(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace kbus
