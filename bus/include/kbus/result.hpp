#pragma once
// kbus::Result<T> and kbus::Error: errors as values at every boundary a message crosses.
// Exceptions are kept for set-up mistakes (bad configuration, programmer errors).

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kbus {

enum class ErrorCode {
  kInvalidArgument,  // bad configuration or input, fix the input
  kDecode,           // a payload or header could not be decoded
  kUnknownType,      // no handler or codec knows the message type
  kTransport,        // the broker or the network refused or failed
  kTimeout,          // a deadline passed
  kNotFound,
  kAlreadyExists,
  kInternal,
};

std::string_view ToString(ErrorCode code);

// An error with a code, a message that says what to do about it, and whether trying the same
// thing again may succeed.
class Error {
 public:
  Error(ErrorCode code, std::string message, bool retriable = false)
      : code_(code), message_(std::move(message)), retriable_(retriable) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retriable() const { return retriable_; }

  // "decode: field 'height': expected an integer, got a string"
  std::string ToString() const;

 private:
  ErrorCode code_;
  std::string message_;
  bool retriable_;
};

// A value or an Error. C++20 has no std::expected; this is the small subset kbus needs.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Precondition: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // Precondition: !ok().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  // Precondition: !ok().
  const Error& error() const { return error_; }

 private:
  Error error_{ErrorCode::kInternal, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return {}; }

}  // namespace kbus
