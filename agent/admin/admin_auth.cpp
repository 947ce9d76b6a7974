// Admin API authentication (token file, bearer check) and the redaction of
// what unauthenticated callers see.
#include "agent/admin/admin_auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace geosync::admin {
namespace {

constexpr std::string_view kWithheld =
    "details withheld: GET /status with the admin bearer token shows them";

// Each Status code's name as Status::ToString() writes it (common/status.cpp).
constexpr std::array<std::string_view, 10> kCodeNames = {
    "I/O error", "protocol error",   "corruption", "PostgreSQL error", "config error",
    "timeout",   "invalid argument", "not found",  "fenced",           "cancelled"};

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string_view::npos ? "" : std::string(s.substr(b, e - b + 1));
}

// Not inlined: GCC 12 -Warray-bounds misreads the move of a string whose
// size it has just compared with 32 (a false positive in basic_string).
[[gnu::noinline]] Status CheckTokenLength(const std::string& path, size_t length,
                                          std::string_view what) {
  if (length >= kMinTokenLength) return Status::Ok();
  return Status::Config(
      fmt::format("{} {}: the token has {} characters, fewer than {}: make a new one with: "
                  "openssl rand -hex 32 > {} && chmod 600 {}",
                  what, path, length, kMinTokenLength, path, path));
}

void RedactField(nlohmann::json& object, const char* key) {
  if (!object.is_object()) return;
  auto it = object.find(key);
  if (it != object.end() && it->is_string()) *it = RedactErrorText(it->get<std::string>());
}

}  // namespace

Status CheckTokenFileMode(const std::string& path, mode_t mode, std::string_view what) {
  if ((mode & 077) == 0) return Status::Ok();
  return Status::Config(
      fmt::format("{} {} is readable or writable by group or others (mode {:04o}): anyone who "
                  "reads it can change this deployment. Run: chmod 600 {}",
                  what, path, mode & 07777, path));
}

Result<std::string> ReadTokenFile(const std::string& path, std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::Config(fmt::format("{} {}: cannot open: {}", what, path, std::strerror(errno)));
  }
  struct stat st {};
  std::string content;
  Status checked = Status::Ok();
  if (::fstat(fd, &st) != 0) {
    checked =
        Status::Config(fmt::format("{} {}: cannot stat: {}", what, path, std::strerror(errno)));
  } else {
    checked = CheckTokenFileMode(path, st.st_mode, what);
  }
  char buf[4096];
  ssize_t n = 0;
  while (checked.ok() && content.size() < 64 * 1024 && (n = ::read(fd, buf, sizeof buf)) > 0) {
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  GEOSYNC_RETURN_IF_ERROR(checked);
  std::string token = Trim(content.substr(0, content.find('\n')));
  if (token.empty()) {
    return Status::Config(fmt::format("{} {}: the first line is empty", what, path));
  }
  GEOSYNC_RETURN_IF_ERROR(CheckTokenLength(path, token.size(), what));
  return token;
}

bool TokenMatches(std::string_view authorization, const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  if (token.empty() || authorization.substr(0, kBearer.size()) != kBearer) return false;
  std::string_view given = authorization.substr(kBearer.size());
  if (given.size() != token.size()) return false;
  return CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

std::string RedactErrorText(std::string_view text) {
  if (text.empty()) return "";
  constexpr std::string_view kPg = "PostgreSQL error ";
  size_t pg = text.find(kPg);
  if (pg != std::string_view::npos) {
    std::string_view code = text.substr(pg + kPg.size(), 5);
    bool sqlstate = code.size() == 5;
    for (char c : code) sqlstate = sqlstate && std::isalnum(static_cast<unsigned char>(c));
    if (sqlstate) return fmt::format("PostgreSQL error {} ({})", code, kWithheld);
  }
  for (std::string_view name : kCodeNames) {
    if (text.starts_with(name) && text.substr(name.size()).starts_with(":")) {
      return fmt::format("{} ({})", name, kWithheld);
    }
  }
  return fmt::format("error ({})", kWithheld);
}

nlohmann::json RedactStatus(nlohmann::json status) {
  if (!status.is_object()) return status;
  std::vector<std::string> originals;
  auto remember = [&](const nlohmann::json& object, const char* key) {
    if (!object.is_object()) return;
    auto it = object.find(key);
    if (it != object.end() && it->is_string() && !it->get<std::string>().empty()) {
      originals.push_back(it->get<std::string>());
    }
  };
  if (auto replica = status.find("replica"); replica != status.end() && replica->is_object()) {
    if (auto apply = replica->find("apply"); apply != replica->end()) {
      remember(*apply, "error");
      RedactField(*apply, "error");
    }
    if (auto seed = replica->find("seed"); seed != replica->end()) {
      remember(*seed, "error");
      RedactField(*seed, "error");
    }
  }
  if (auto promotion = status.find("promotion"); promotion != status.end()) {
    remember(*promotion, "error");
    RedactField(*promotion, "error");
  }
  if (auto last = status.find("last_error"); last != status.end() && last->is_string()) {
    const std::string text = last->get<std::string>();
    for (const auto& o : originals) {
      if (!o.empty() && text.find(o) != std::string::npos) {
        *last = RedactErrorText(text);
        break;
      }
    }
  }
  return status;
}

std::string RedactReadinessReason(std::string_view reason) {
  constexpr std::string_view kApply = "apply stopped: ";
  if (!reason.starts_with(kApply)) return std::string(reason);
  return std::string(kApply) + RedactErrorText(reason.substr(kApply.size()));
}

}  // namespace geosync::admin
