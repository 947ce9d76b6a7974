// EtcdServer; see etcd.h.
#include "tests/support/etcd.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "agent/admin/admin_client.h"
#include "tests/support/site.h"
#include "tests/support/wait.h"

namespace geosync::testing {

EtcdServer::EtcdServer() {
  char tmpl[] = "/tmp/geosync-etcd-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
}

EtcdServer::~EtcdServer() {
  process_.reset();
  std::filesystem::remove_all(dir_);
}

std::string EtcdServer::url() const { return fmt::format("http://127.0.0.1:{}", client_port_); }

Status EtcdServer::Start() {
  const std::string binary = "/usr/bin/etcd";
  if (::access(binary.c_str(), X_OK) != 0) {
    return Status::NotFound(binary + " is missing: install etcd-server (scripts/install-deps.sh)");
  }
  client_port_ = FreeTcpPort();
  peer_port_ = FreeTcpPort();
  const std::string peer = fmt::format("http://127.0.0.1:{}", peer_port_);
  ProcessSpec spec;
  spec.argv = {binary,
               "--name",
               "geosync-test",
               "--data-dir",
               dir_ + "/data",
               "--listen-client-urls",
               url(),
               "--advertise-client-urls",
               url(),
               "--listen-peer-urls",
               peer,
               "--initial-advertise-peer-urls",
               peer,
               "--initial-cluster",
               "geosync-test=" + peer};
  spec.log_path = dir_ + "/etcd.log";
  process_ = std::make_unique<ChildProcess>(spec);
  GEOSYNC_RETURN_IF_ERROR(process_->Start());
  bool up = WaitFor(
      [&] {
        admin::HttpCall call;
        call.method = "POST";
        call.base_url = url();
        call.target = "/v3/kv/range";
        call.body = R"({"key":"eA=="})";
        auto r = admin::Http(call);
        return r.ok() && r->status == 200;
      },
      std::chrono::seconds(30), "etcd answers");
  if (!up) return Status::Timeout("etcd did not start:\n" + ReadLog());
  return Status::Ok();
}

std::string EtcdServer::ReadLog() const {
  std::ifstream in(dir_ + "/etcd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace geosync::testing
