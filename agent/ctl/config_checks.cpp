// Topology, TLS and peer checks of geosyncctl check-config.
#include "agent/ctl/config_checks.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "agent/admin/admin_client.h"
#include "agent/net/peer_stream.h"

namespace geosync::ctl {
namespace {

namespace asio = boost::asio;

// A site certificate closer than this to its end is a warning.
constexpr int kCertWarnDays = 30;

CheckItem Item(std::string subject, Code code, std::string found, std::string fix = {}) {
  return CheckItem::Failed(std::move(subject), code, std::move(found), std::move(fix));
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr ReadCert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return nullptr;
  X509Ptr cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return cert;
}

std::string CommonName(X509* cert) {
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf - 1);
  return buf;
}

// Verifies `cert` against the CA file for TLS client and server use.
std::string VerifyAgainstCa(X509* cert, const std::string& ca_file) {
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  if (!store || X509_STORE_load_file(store.get(), ca_file.c_str()) != 1) {
    return "cannot load " + ca_file;
  }
  for (int purpose : {X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT}) {
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr);
    X509_STORE_CTX_set_purpose(ctx.get(), purpose);
    if (X509_verify_cert(ctx.get()) != 1) {
      return fmt::format("{} (as a TLS {})",
                         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())),
                         purpose == X509_PURPOSE_SSL_SERVER ? "server" : "client");
    }
  }
  return "";
}

// Connects `socket` to `ep` within `timeout`.
Status TcpConnect(asio::io_context& io, tcp::socket& socket, const Endpoint& ep,
                  std::chrono::milliseconds timeout) {
  tcp::resolver resolver(io);
  boost::system::error_code result = asio::error::timed_out;
  resolver.async_resolve(
      ep.host, std::to_string(ep.port), [&](const boost::system::error_code& ec, auto endpoints) {
        if (ec) {
          result = ec;
          return;
        }
        asio::async_connect(socket, endpoints,
                            [&](const boost::system::error_code& ec2, auto) { result = ec2; });
      });
  io.run_for(timeout);
  io.restart();
  if (result == asio::error::timed_out) {
    return Status::Timeout(fmt::format("no answer within {} ms", timeout.count()));
  }
  if (result) return Status::Io(result.message());
  return Status::Ok();
}

// Connects to the upstream and, with TLS, completes the handshake as geosyncd
// would (client side, mutual authentication). Returns the server
// certificate's CN ("" without TLS).
Result<std::string> ProbeUpstream(const Endpoint& ep, std::shared_ptr<asio::ssl::context> tls,
                                  std::chrono::milliseconds timeout) {
  asio::io_context io;
  tcp::socket socket(io);
  GEOSYNC_RETURN_IF_ERROR(TcpConnect(io, socket, ep, timeout));
  if (!tls) return std::string();
  PeerStream stream(std::move(socket), tls, 0);
  Status handshake = Status::Timeout("TLS handshake did not finish");
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { handshake = co_await stream.Handshake(false, timeout); },
      asio::detached);
  io.run_for(timeout + std::chrono::seconds(1));
  GEOSYNC_RETURN_IF_ERROR(handshake);
  return stream.PeerCommonName();
}

}  // namespace

std::vector<CheckItem> CheckTopology(const Config& config, const Topology& topology,
                                     const std::string& topology_path) {
  std::vector<CheckItem> items;
  std::string subject = "topology " + topology_path;
  if (topology.cluster_id != config.cluster_id) {
    items.push_back(Item(subject, Code::kConfig,
                         fmt::format("cluster_id \"{}\" but the site config says \"{}\"",
                                     topology.cluster_id, config.cluster_id),
                         "use the same cluster_id in the topology file and every site config"));
  }
  const TopologySite* self = nullptr;
  for (const auto& s : topology.sites) {
    if (s.name == config.site) self = &s;
  }
  if (!self) {
    items.push_back(Item(subject, Code::kConfig, fmt::format("site {} is not listed", config.site),
                         fmt::format("add {{\"name\": \"{}\", \"admin\": \"http://HOST:PORT\"}} "
                                     "to its sites (HOST:PORT = this config's admin.listen)",
                                     config.site)));
  } else if (!config.admin.listen) {
    items.push_back(Item(
        subject, Code::kConfig,
        fmt::format("lists {} at {} but the config has no admin.listen", config.site, self->admin),
        "add \"admin\": {\"listen\": {\"host\": ..., \"port\": ...}} to the "
        "site config, or status cannot reach this site"));
  } else {
    auto url = admin::ParseHttpUrl(self->admin);
    if (url.ok() && url->port != config.admin.listen->port) {
      items.push_back(Item(subject, Code::kConfig,
                           fmt::format("lists {} at {} but admin.listen.port is {}", config.site,
                                       self->admin, config.admin.listen->port),
                           "make the topology's admin URL and the site's admin.listen agree"));
    }
  }
  if (items.empty()) {
    items.push_back(Item(subject, Code::kOk,
                         fmt::format("cluster {}, {} sites, this site at {}", topology.cluster_id,
                                     topology.sites.size(), self->admin)));
  }
  return items;
}

std::vector<CheckItem> CheckTls(const Config& config) {
  std::vector<CheckItem> items;
  if (!config.tls.enabled) {
    CheckItem item =
        Item("tls", Code::kOk, "tls.enabled is false",
             "make certificates (/usr/share/geosync/make-certs.sh, docs/runbook.md) and set "
             "tls.enabled, ca_file, cert_file, key_file: without TLS any host "
             "that reaches the port can join or read the stream");
    item.warning = true;
    items.push_back(std::move(item));
    return items;
  }
  // Loads CA, certificate chain and key the way geosyncd does.
  auto ctx = MakeTlsContext(config.tls, /*server=*/true);
  if (!ctx.ok()) {
    items.push_back(Item("tls", Code::kConfig, ctx.status().message(),
                         "fix the path or the file permissions (geosyncd runs as user "
                         "geosync and must read the key)"));
    return items;
  }
  if (SSL_CTX_check_private_key((*ctx)->native_handle()) != 1) {
    items.push_back(Item("tls", Code::kConfig,
                         fmt::format("key {} does not belong to certificate {}",
                                     config.tls.key_file, config.tls.cert_file),
                         "point tls.key_file at the key made with this certificate"));
  }
  X509Ptr cert = ReadCert(config.tls.cert_file);
  if (!cert) {
    items.push_back(
        Item("tls", Code::kConfig, "cannot read " + config.tls.cert_file, "use a PEM certificate"));
    return items;
  }
  std::string cn = CommonName(cert.get());
  if (cn != config.site) {
    items.push_back(
        Item("tls", Code::kConfig,
             fmt::format("certificate {} has CN \"{}\", not the site name \"{}\"",
                         config.tls.cert_file, cn, config.site),
             fmt::format("make a certificate with CN={} (/usr/share/geosync/make-certs.sh DIR "
                         "{}): peers refuse any other name",
                         config.site, config.site)));
  }
  std::string verify = VerifyAgainstCa(cert.get(), config.tls.ca_file);
  if (!verify.empty()) {
    items.push_back(Item("tls", Code::kConfig,
                         fmt::format("certificate {}: {}", config.tls.cert_file, verify),
                         "issue the certificate from the deployment CA with EKU serverAuth "
                         "and clientAuth (/usr/share/geosync/make-certs.sh)"));
  }
  if (items.empty()) {
    items.push_back(Item("tls", Code::kOk,
                         fmt::format("certificate CN={} signed by {}", cn, config.tls.ca_file)));
    int days = 0, seconds = 0;
    if (ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get())) == 1 &&
        days < kCertWarnDays) {
      CheckItem soon =
          Item("tls", Code::kOk,
               fmt::format("certificate {} expires in {} days", config.tls.cert_file, days),
               fmt::format("issue a new one before then (make-certs.sh: move the old "
                           "{}.crt/.key away and run it again with {})",
                           config.site, config.site));
      soon.warning = true;
      items.push_back(std::move(soon));
    }
  }
  return items;
}

std::vector<CheckItem> CheckPeers(const Config& config, const Topology* topology,
                                  std::chrono::milliseconds timeout) {
  std::vector<CheckItem> items;
  if (config.role == Role::kReplica && config.upstream) {
    std::string subject =
        fmt::format("upstream {}:{}", config.upstream->host, config.upstream->port);
    std::shared_ptr<asio::ssl::context> tls;
    if (config.tls.enabled) {
      auto ctx = MakeTlsContext(config.tls, /*server=*/false);
      if (ctx.ok()) tls = *ctx;  // else the tls check above reported it
    }
    auto probe = ProbeUpstream(*config.upstream, tls, timeout);
    if (probe.ok()) {
      items.push_back(Item(subject, Code::kOk,
                           tls ? fmt::format("TLS handshake done, server certificate CN={}", *probe)
                               : "accepts TCP connections"));
    } else if (probe.status().code() == Code::kFenced) {
      // Handshake() reports a refused certificate as kFenced; here it is a
      // deployment mistake to fix, not a fencing decision.
      items.push_back(Item(subject, Code::kConfig, probe.status().message(),
                           "give both sites certificates from the same deployment CA "
                           "(tls.ca_file; /usr/share/geosync/make-certs.sh)"));
    } else {
      items.push_back(Item(subject, probe.status().code(),
                           "cannot connect: " + probe.status().message(),
                           "start the source site's geosyncd (its listen block), or fix "
                           "upstream.host/port, DNS or the firewall"));
    }
  }
  if (!topology) return items;
  for (const auto& site : topology->sites) {
    if (site.name == config.site) continue;  // may not run yet while it is being deployed
    admin::HttpCall call;
    call.base_url = site.admin;
    call.target = "/healthz";
    call.timeout = timeout;
    // https:// sites: trust the deployment CA the way geosyncd does, unless
    // --ca-file / $GEOSYNC_CA_FILE say otherwise.
    call.tls = admin::DefaultClientTls();
    if (call.tls.ca_file.empty()) {
      call.tls.ca_file =
          config.admin.tls.ca_file.empty() ? config.tls.ca_file : config.admin.tls.ca_file;
    }
    if (call.tls.cert_file.empty() && config.tls.enabled) {
      call.tls.cert_file = config.tls.cert_file;
      call.tls.key_file = config.tls.key_file;
    }
    auto answer = admin::Http(call);
    std::string subject = fmt::format("site {} ({})", site.name, site.admin);
    if (answer.ok() && answer->status == 200) {
      items.push_back(Item(subject, Code::kOk, "GET /healthz answered 200"));
    } else {
      std::string found = answer.ok() ? fmt::format("GET /healthz answered HTTP {}", answer->status)
                                      : answer.status().message();
      items.push_back(Item(subject, answer.ok() ? Code::kProtocol : answer.status().code(), found,
                           fmt::format("start geosyncd@{} there, or fix its admin URL in the "
                                       "topology file, or the firewall",
                                       site.name)));
    }
  }
  return items;
}

}  // namespace geosync::ctl
