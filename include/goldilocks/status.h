// Status: how every Goldilocks call reports failure. No exceptions cross the
// API and no call aborts; a failed call names the bad parameter and the fix.
#pragma once

#include <string>
#include <utility>

namespace goldilocks {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // the caller's input is wrong; the message says how to fix it
  kUnsupported,        // valid input, but no eligible backend/feature handles it
  kResourceExhausted,  // would not fit in memory (or a cache's capacity)
  kInternal,           // a bug in Goldilocks; please report it
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: q: ..." — for logs and exceptions.
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
inline Status Unsupported(std::string msg) { return {StatusCode::kUnsupported, std::move(msg)}; }
inline Status ResourceExhausted(std::string msg) { return {StatusCode::kResourceExhausted, std::move(msg)}; }
inline Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

}  // namespace goldilocks

// Propagate a non-ok status to the caller (internal convenience, also usable by clients).
#define GOLDILOCKS_RETURN_IF_ERROR(expr)            \
  do {                                              \
    ::goldilocks::Status _gl_status = (expr);       \
    if (!_gl_status.ok()) return _gl_status;        \
  } while (0)
