// ClaimTcpPort: ports for servers under test, claimed across processes.
#include "tests/support/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace geosync::testing {
namespace {

constexpr uint16_t kFirst = 20000;
constexpr uint16_t kLast = 32767;
constexpr const char* kClaimDir = "/tmp/geosync-test-ports";

bool Bindable(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

uint16_t ClaimTcpPort() {
  static std::mutex mu;
  static std::mt19937 rng(std::random_device{}());
  std::lock_guard lock(mu);
  if (::mkdir(kClaimDir, 01777) != 0 && errno != EEXIST) {
    throw std::runtime_error(fmt::format("mkdir {}: {}", kClaimDir, std::strerror(errno)));
  }
  std::uniform_int_distribution<int> pick(kFirst, kLast);
  for (int attempt = 0; attempt < 2000; ++attempt) {
    const auto port = static_cast<uint16_t>(pick(rng));
    const std::string path = fmt::format("{}/{}", kClaimDir, port);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    // The lock is this process's claim: kept (the descriptor is never
    // closed) until it exits, when the kernel releases it.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || !Bindable(port)) {
      ::close(fd);
      continue;
    }
    return port;
  }
  throw std::runtime_error(
      fmt::format("no free TCP port on 127.0.0.1 in {}-{} after 2000 tries", kFirst, kLast));
}

}  // namespace geosync::testing
