// Status: error values with a code, a message and, for PostgreSQL errors, the
// SQLSTATE.
#include "common/status.h"

#include <fmt/format.h>

namespace geosync {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kIo:
      return "I/O error";
    case Code::kProtocol:
      return "protocol error";
    case Code::kCorruption:
      return "corruption";
    case Code::kPostgres:
      return "PostgreSQL error";
    case Code::kConfig:
      return "config error";
    case Code::kTimeout:
      return "timeout";
    case Code::kCancelled:
      return "cancelled";
    case Code::kInvalidArgument:
      return "invalid argument";
    case Code::kNotFound:
      return "not found";
    case Code::kFenced:
      return "fenced";
  }
  return "unknown";
}

Status::Status(Code code, std::string message, std::string sqlstate) {
  if (code != Code::kOk) {
    rep_ = std::make_shared<const Rep>(Rep{code, std::move(message), std::move(sqlstate)});
  }
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

const std::string& Status::sqlstate() const {
  static const std::string kEmpty;
  return rep_ ? rep_->sqlstate : kEmpty;
}

bool IsRetryableSqlstate(std::string_view s) {
  if (s.size() != 5) return false;
  return s.substr(0, 2) == "08" || s == "57P01" || s == "57P02" || s == "57P03" ||
         s.substr(0, 2) == "53" || s == "40001" || s == "40P01";
}

bool Status::retryable() const {
  switch (code()) {
    case Code::kIo:
    case Code::kTimeout:
      return true;
    case Code::kPostgres:
      return IsRetryableSqlstate(sqlstate());
    default:
      return false;
  }
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(rep_->code, fmt::format("{}: {}", context, rep_->message), rep_->sqlstate);
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (code() == Code::kPostgres && !sqlstate().empty()) {
    return fmt::format("PostgreSQL error {}: {}", sqlstate(), message());
  }
  return fmt::format("{}: {}", CodeName(code()), message());
}

}  // namespace geosync
