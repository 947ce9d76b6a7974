// StreamServer: the source's listener for replica sites. Each connection is
// one session: TLS handshake, Hello (cluster id, site, epoch, durable
// position), then the spool streamed from just after that position in Data
// frames, heartbeats, and acks back. Sessions read the spool, never the WAL:
// a slow or cut-off site costs spool disk on the source, not primary WAL.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/net/peer_stream.h"
#include "agent/source/site_registry.h"
#include "agent/spool/spool.h"
#include "common/config.h"
#include "common/control.h"
#include "common/handshake.h"
#include "common/link_refusals.h"

namespace geosync {

struct StreamServerOptions {
  std::string cluster_id;
  std::string site;
  uint64_t epoch = 1;
  Endpoint listen;
  std::shared_ptr<asio::ssl::context> tls;  // null: plain TCP, on loopback only unless...
  bool allow_plaintext = false;             // ...the config says allow_plaintext_links
  int compression_level = 3;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds peer_timeout{10000};
  uint64_t bandwidth_bytes_per_sec = 0;  // per site; 0 = unlimited
  size_t max_batch_bytes = 256 * 1024;
  // Where each earlier epoch ended in this source's lineage: a site holding
  // more of such an epoch than that has diverged and is refused.
  std::vector<Position> epoch_ends;
  // Refused Hellos and acks are counted here when set.
  LinkRefusals* refusals = nullptr;
  // The identity, listener (config.listen, which the caller has checked) and
  // link settings of the config; TLS, the lineage and the refusal counters
  // are the role's to set.
  static StreamServerOptions FromConfig(const Config& config, uint64_t epoch);
};

class StreamServer {
 public:
  // `primary_wal` returns the primary's current WAL end as last seen;
  // `on_higher_epoch` runs when a known site of this cluster that proved its
  // name reports a plausible epoch above ours (common/handshake.h
  // CheckHello): this source is stale and must fence itself. A refused or
  // unauthenticated Hello never calls it.
  StreamServer(asio::io_context& io, StreamServerOptions options, Spool* spool,
               SiteRegistry* registry, std::function<Lsn()> primary_wal,
               std::function<void(uint64_t epoch, const std::string& site)> on_higher_epoch);
  ~StreamServer();

  Status Listen();
  uint16_t port() const { return port_; }
  asio::awaitable<void> AcceptLoop();
  // Serves connections whose Hello asks for a seed (kHelloNeedsSeed), once
  // the Hello is accepted; without a handler they are refused.
  using SeedHandler = std::function<asio::awaitable<Status>(const Hello&, PeerStream&)>;
  void SetSeedHandler(SeedHandler handler) { seed_handler_ = std::move(handler); }
  // Thread-safe: new durable data in the spool; wakes idle sessions.
  void NotifyDurable();
  void Stop();

  struct Session;

 private:
  asio::awaitable<void> RunSession(tcp::socket socket);
  asio::awaitable<Status> Serve(std::shared_ptr<Session> session);
  asio::awaitable<Result<Hello>> ReadHello(Session& session);
  HelloVerdict Judge(const Hello& hello, Session& session, HelloPolicy* policy);
  asio::awaitable<Status> Reply(Session& session, const Hello& hello, const HelloVerdict& verdict);
  asio::awaitable<Status> Send(std::shared_ptr<Session> session);
  // The heartbeat: source clock, the primary's WAL position, the last sent unit.
  asio::awaitable<Status> SendHeartbeat(Session& session);
  asio::awaitable<Status> Receive(std::shared_ptr<Session> session);
  void CountHello(std::string_view reason);

  asio::io_context& io_;
  StreamServerOptions options_;
  Spool* spool_;
  SiteRegistry* registry_;
  std::function<Lsn()> primary_wal_;
  std::function<void(uint64_t, const std::string&)> on_higher_epoch_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::set<std::shared_ptr<Session>> sessions_;
  std::atomic<bool> stopping_{false};
  SeedHandler seed_handler_;
};

}  // namespace geosync
