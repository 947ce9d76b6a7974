// Errors are values: Status says whether an operation worked and, if not, what
// kind of failure it was and whether retrying can help. Result<T> carries a
// value or a Status. OK is free: it holds no allocation.
#pragma once

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace geosync {

enum class Code : int {
  kOk = 0,
  kIo,               // file or socket I/O failed; retryable
  kProtocol,         // a peer sent bytes that break the protocol; fatal for that stream
  kCorruption,       // stored data fails its checksum or framing; fatal
  kPostgres,         // PostgreSQL reported an error; retryable iff SQLSTATE class 08/57P0x/53
  kConfig,           // bad configuration; fatal
  kTimeout,          // a deadline passed; retryable
  kCancelled,        // shut down on request
  kInvalidArgument,  // a caller passed something that cannot work; fatal
  kNotFound,         // a named thing does not exist
  kFenced,           // refused because of the epoch/fencing rules; fatal
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message, std::string sqlstate = {});

  static Status Ok() { return Status(); }
  static Status Io(std::string m) { return Status(Code::kIo, std::move(m)); }
  static Status Protocol(std::string m) { return Status(Code::kProtocol, std::move(m)); }
  static Status Corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status Postgres(std::string m, std::string sqlstate) {
    return Status(Code::kPostgres, std::move(m), std::move(sqlstate));
  }
  static Status Config(std::string m) { return Status(Code::kConfig, std::move(m)); }
  static Status Timeout(std::string m) { return Status(Code::kTimeout, std::move(m)); }
  static Status Cancelled(std::string m) { return Status(Code::kCancelled, std::move(m)); }
  static Status InvalidArgument(std::string m) {
    return Status(Code::kInvalidArgument, std::move(m));
  }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status Fenced(std::string m) { return Status(Code::kFenced, std::move(m)); }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  const std::string& message() const;
  // Five-character SQLSTATE for kPostgres, empty otherwise.
  const std::string& sqlstate() const;
  // Whether the same operation may succeed if tried again later: network and
  // I/O failures, timeouts, and PostgreSQL connection-class SQLSTATEs.
  bool retryable() const;
  // Prepends context: "reading spool segment 3: " + message.
  Status WithContext(std::string_view context) const;
  // "protocol error: ..." / "PostgreSQL error 23505: ...".
  std::string ToString() const;

 private:
  struct Rep {
    Code code;
    std::string message;
    std::string sqlstate;
  };
  std::shared_ptr<const Rep> rep_;
};

// Whether a PostgreSQL SQLSTATE means the connection or server went away
// (class 08, admin shutdown 57P01-57P03, insufficient resources 53).
bool IsRetryableSqlstate(std::string_view sqlstate);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace geosync

// Returns early from the enclosing function when a Status is not OK.
#define GEOSYNC_RETURN_IF_ERROR(expr) \
  do {                                \
    ::geosync::Status _st = (expr);   \
    if (!_st.ok()) return _st;        \
  } while (0)

#define GEOSYNC_CONCAT_INNER(a, b) a##b
#define GEOSYNC_CONCAT(a, b) GEOSYNC_CONCAT_INNER(a, b)
// Declares `lhs` from a Result, or returns its Status.
#define GEOSYNC_ASSIGN_OR_RETURN(lhs, expr) \
  GEOSYNC_ASSIGN_OR_RETURN_IMPL(GEOSYNC_CONCAT(_res_, __LINE__), lhs, expr)
#define GEOSYNC_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

// The same for coroutines (co_return instead of return).
#define GEOSYNC_RETURN_IF_ERROR_CO(expr) \
  do {                                   \
    ::geosync::Status _st = (expr);      \
    if (!_st.ok()) co_return _st;        \
  } while (0)
#define GEOSYNC_ASSIGN_OR_RETURN_CO(lhs, expr) \
  GEOSYNC_ASSIGN_OR_RETURN_CO_IMPL(GEOSYNC_CONCAT(_res_, __LINE__), lhs, expr)
#define GEOSYNC_ASSIGN_OR_RETURN_CO_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                     \
  if (!tmp.ok()) co_return tmp.status();                 \
  lhs = std::move(tmp).value()
