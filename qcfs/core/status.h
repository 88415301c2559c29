// Status and Result<T>: how every QCFS layer reports failure.
//
// A Status carries an errno value (so the FUSE adapter can reply with it
// unchanged) and a message with context ("chunk 3f2a.. at segment 17 offset
// 4096: checksum mismatch"). Both types are [[nodiscard]]: dropping one takes
// an explicit IgnoreError() call, which is easy to grep for.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/core.h>

namespace qcfs {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  // REQUIRES: err != 0 (an errno value such as EIO, ENOSPC, EINVAL).
  static Status Error(int err, std::string message) { return Status(err, std::move(message)); }
  template <typename... Args>
  static Status Errorf(int err, fmt::format_string<Args...> format, Args&&... args) {
    return Status(err, fmt::format(format, std::forward<Args>(args)...));
  }

  bool ok() const { return code_ == 0; }
  // The errno value; 0 when ok.
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  // "message" when the message is set, otherwise strerror(code).
  std::string ToString() const;

  // Returns a copy whose message is "context: message".
  Status WithContext(std::string_view context) const;

  void IgnoreError() const {}

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}

  int code_ = 0;
  std::string message_;
};

// Status from errno-style failure of a system call: "what: strerror(err)".
Status ErrnoStatus(int err, std::string_view what);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status::Error(EINVAL, "Result built from an OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }

  void IgnoreError() const {}

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace qcfs

#define QCFS_CONCAT_INNER(a, b) a##b
#define QCFS_CONCAT(a, b) QCFS_CONCAT_INNER(a, b)

#define QCFS_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::qcfs::Status _qcfs_status = (expr);   \
    if (!_qcfs_status.ok()) return _qcfs_status; \
  } while (0)

#define QCFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define QCFS_ASSIGN_OR_RETURN(lhs, expr) \
  QCFS_ASSIGN_OR_RETURN_IMPL(QCFS_CONCAT(_qcfs_result_, __LINE__), lhs, expr)
