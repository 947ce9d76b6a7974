// StreamServer: per-site sessions streaming the spool over framed TCP/TLS.
#include "agent/source/stream_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/source/site_session.h"
#include "common/clock.h"
#include "common/control.h"
#include "common/encoding.h"
#include "common/handshake.h"
#include "common/record_batch.h"

namespace geosync {

using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

struct StreamServer::Session {
  Session(tcp::socket s, std::shared_ptr<asio::ssl::context> tls, int level)
      : stream(std::move(s), tls, level), wake(stream.socket().get_executor()) {}
  PeerStream stream;
  asio::steady_timer wake;
  std::string site;
  Position start;
  // The last unit sent on this session (its start counts as held): acks
  // may not claim more (common/handshake.h CheckAck).
  Position sent;
  std::unique_ptr<SpoolReader> reader;
};

namespace {
constexpr std::chrono::milliseconds kProgressInterval{100};
}  // namespace

StreamServer::StreamServer(asio::io_context& io, StreamServerOptions options, Spool* spool,
                           SiteRegistry* registry, std::function<Lsn()> primary_wal,
                           std::function<void(uint64_t, const std::string&)> on_higher_epoch)
    : io_(io),
      options_(std::move(options)),
      spool_(spool),
      registry_(registry),
      primary_wal_(std::move(primary_wal)),
      on_higher_epoch_(std::move(on_higher_epoch)),
      acceptor_(io) {}

StreamServer::~StreamServer() = default;

Status StreamServer::Listen() {
  if (!options_.tls) {
    GEOSYNC_RETURN_IF_ERROR(CheckPlaintextListen(options_.listen.host, options_.allow_plaintext));
  }
  GEOSYNC_RETURN_IF_ERROR(OpenAcceptor(acceptor_, options_.listen, "stream server (listen)"));
  port_ = acceptor_.local_endpoint().port();
  if (!options_.tls && !IsLoopbackAddress(options_.listen.host)) {
    spdlog::critical(
        "stream server on {}:{} uses plain TCP WITHOUT TLS on a non-loopback address "
        "(allow_plaintext_links): anyone who reaches it can claim to be a site, read the "
        "stream and report epochs; use TLS outside a trusted network",
        options_.listen.host, port_);
  } else if (!options_.tls) {
    spdlog::warn("stream server on {}:{} uses plain TCP without TLS: loopback only",
                 options_.listen.host, port_);
  }
  spdlog::info("stream server listening on {}:{} (epoch {})", options_.listen.host, port_,
               options_.epoch);
  return Status::Ok();
}

void StreamServer::Stop() {
  stopping_ = true;
  asio::post(io_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto& s : sessions_) {
      s->stream.Close();
      s->wake.cancel();
    }
  });
}

void StreamServer::NotifyDurable() {
  asio::post(io_, [this] {
    for (auto& s : sessions_) s->wake.cancel();
  });
}

asio::awaitable<void> StreamServer::AcceptLoop() {
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(use_awaitable));
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted) break;
      spdlog::warn("stream server: accept failed: {}", ec.message());
      continue;
    }
    asio::co_spawn(io_, RunSession(std::move(socket)), asio::detached);
  }
}

void StreamServer::CountHello(std::string_view reason) {
  if (options_.refusals) options_.refusals->Hello(reason);
}

asio::awaitable<void> StreamServer::RunSession(tcp::socket socket) {
  auto session =
      std::make_shared<Session>(std::move(socket), options_.tls, options_.compression_level);
  sessions_.insert(session);
  Status st = co_await Serve(session);
  sessions_.erase(session);
  if (!session->site.empty()) {
    registry_->AddTraffic(session->site, session->stream.counters().raw_out,
                          session->stream.counters().wire_out);
    registry_->Disconnected(session->site, st.ok() ? "" : st.ToString());
  }
  if (!st.ok() && !stopping_) {
    // Tell the peer why before closing; best effort.
    std::string err;
    EncodeErrorMessage(ErrorMessage::FromStatus(st), &err);
    co_await session->stream.WriteFrame(FrameType::kError, err);
    spdlog::warn("stream session {} ({}): {}", session->site.empty() ? "?" : session->site,
                 session->stream.remote(), st.ToString());
  }
  session->stream.Close();
}

// TLS, then the first frame, which must be a Hello; refusals are counted.
asio::awaitable<Result<Hello>> StreamServer::ReadHello(Session& session) {
  Status shaken = co_await session.stream.Handshake(true, options_.peer_timeout);
  if (!shaken.ok()) {
    CountHello("tls_handshake");
    co_return shaken;
  }
  GEOSYNC_ASSIGN_OR_RETURN_CO(DecodedFrame first,
                              co_await session.stream.ReadFrame(options_.peer_timeout));
  if (first.type != FrameType::kHello) {
    CountHello("malformed");
    co_return Status::Protocol(
        fmt::format("expected Hello, got frame type {}", static_cast<int>(first.type)));
  }
  auto decoded = DecodeHello(AsBytes(first.payload));
  if (!decoded.ok()) CountHello("malformed");
  co_return decoded;
}

// The trust rules and what this source serves (common/handshake.h
// AdmitHello), then whether the spool still holds the Hello's position (the
// session's reader is opened there).
HelloVerdict StreamServer::Judge(const Hello& hello, Session& session, HelloPolicy* policy) {
  policy->cluster_id = options_.cluster_id;
  policy->self = options_.site;
  policy->epoch = options_.epoch;
  policy->sites = registry_->Sites();
  policy->tls = session.stream.tls();
  if (policy->tls) policy->peer_cn = session.stream.PeerCommonName();
  policy->epoch_ends = options_.epoch_ends;
  SourceOffer offer;
  offer.serves_seeds = static_cast<bool>(seed_handler_);
  offer.dropped = registry_->Dropped(hello.site_name);
  HelloVerdict verdict = AdmitHello(hello, *policy, offer);
  if (!verdict.ok() || (hello.flags & kHelloNeedsSeed) != 0) return verdict;
  auto reader = spool_->ReadFrom(hello.durable);
  if (!reader.ok()) {
    return {HelloRefusal::kNeedsSeed,
            fmt::format("site {} needs a re-seed (`geosyncctl seed --site {}`): {}",
                        hello.site_name, hello.site_name, reader.status().message()),
            false};
  }
  session.reader = std::move(reader).value();
  return verdict;
}

asio::awaitable<Status> StreamServer::Reply(Session& session, const Hello& hello,
                                            const HelloVerdict& verdict) {
  HelloReply reply;
  reply.accepted = verdict.ok();
  reply.error = verdict.message;
  // Replicas of protocol 2 cannot decode a refusal code.
  if (hello.protocol_version >= 3) reply.code = verdict.code;
  reply.source_site = options_.site;
  reply.source_epoch = options_.epoch;
  reply.start = hello.durable;
  std::string bytes;
  EncodeHelloReply(reply, &bytes);
  co_return co_await session.stream.WriteFrame(FrameType::kHelloReply, bytes);
}

asio::awaitable<Status> StreamServer::Serve(std::shared_ptr<Session> session) {
  GEOSYNC_ASSIGN_OR_RETURN_CO(Hello hello, co_await ReadHello(*session));
  HelloPolicy policy;
  HelloVerdict verdict = Judge(hello, *session, &policy);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await Reply(*session, hello, verdict));
  if (!verdict.ok()) {
    CountHello(HelloRefusalName(verdict.code));
    spdlog::warn("refused site {} from {}{} ({}): {}", hello.site_name, session->stream.remote(),
                 policy.tls ? fmt::format(" (certificate \"{}\")", policy.peer_cn) : "",
                 HelloRefusalName(verdict.code), verdict.message);
    // Only a known site of this cluster that proved its name may make this
    // source fence itself; a refusal of anything else changes nothing here.
    if (verdict.may_report_epoch && on_higher_epoch_) {
      on_higher_epoch_(hello.epoch, hello.site_name);
    }
    co_return Status::Ok();
  }
  session->site = hello.site_name;
  session->start = session->sent = hello.durable;
  if ((hello.flags & kHelloNeedsSeed) != 0) {
    session->site.clear();  // a seed connection is not the site's stream
    co_return co_await seed_handler_(hello, session->stream);
  }
  registry_->Connected(hello.site_name, session->stream.remote());
  spdlog::info("site {} connected from {}{}, streaming after {}", hello.site_name,
               session->stream.remote(), session->stream.tls() ? " (TLS)" : "",
               hello.durable.ToString());
  auto result = co_await (Send(session) || Receive(session));
  co_return result.index() == 0 ? std::get<0>(result) : std::get<1>(result);
}

asio::awaitable<Status> StreamServer::Send(std::shared_ptr<Session> session) {
  BatchEncoder batch_encoder;
  std::string batch;
  auto last_heartbeat = std::chrono::steady_clock::now() - options_.heartbeat;
  Position& last_sent = session->sent;
  while (!stopping_) {
    batch.clear();
    GEOSYNC_RETURN_IF_ERROR_CO(
        FillBatch(*session->reader, batch_encoder, options_.max_batch_bytes, &batch, &last_sent));
    if (!batch.empty()) {
      uint64_t before = session->stream.counters().wire_out;
      GEOSYNC_RETURN_IF_ERROR_CO(co_await session->stream.WriteFrame(FrameType::kData, batch));
      if (options_.bandwidth_bytes_per_sec > 0) {
        // Paced, but heartbeats keep going every kProgressInterval meanwhile:
        // a site behind a capped link still hears where the primary is.
        uint64_t sent = session->stream.counters().wire_out - before;
        auto pace_until =
            std::chrono::steady_clock::now() +
            std::chrono::microseconds(sent * 1000000 / options_.bandwidth_bytes_per_sec);
        asio::steady_timer pace(co_await asio::this_coro::executor);
        for (auto now = std::chrono::steady_clock::now(); now < pace_until;
             now = std::chrono::steady_clock::now()) {
          if (now - last_heartbeat >= kProgressInterval) {
            const uint64_t hb_before = session->stream.counters().wire_out;
            GEOSYNC_RETURN_IF_ERROR_CO(co_await SendHeartbeat(*session));
            last_heartbeat = now;
            // The heartbeat's bytes count against the cap too.
            pace_until +=
                std::chrono::microseconds((session->stream.counters().wire_out - hb_before) *
                                          1000000 / options_.bandwidth_bytes_per_sec);
          }
          pace.expires_at(std::min(pace_until, last_heartbeat + kProgressInterval));
          co_await pace.async_wait(asio::as_tuple(use_awaitable));
          if (stopping_) co_return Status::Cancelled("stream server stopping");
        }
      }
    }
    auto now = std::chrono::steady_clock::now();
    // While data flows, a heartbeat follows a batch every kProgressInterval:
    // a replica's last word from a source that dies under load is then at
    // most that old (the failover loss estimate rests on it).
    const bool progress = !batch.empty() && now - last_heartbeat >= kProgressInterval;
    if (progress || now - last_heartbeat >= options_.heartbeat) {
      GEOSYNC_RETURN_IF_ERROR_CO(co_await SendHeartbeat(*session));
      last_heartbeat = now;
    }
    if (batch.empty()) {
      // Idle: sleep until new durable data (NotifyDurable cancels the timer)
      // or the next heartbeat is due.
      session->wake.expires_at(last_heartbeat + options_.heartbeat);
      co_await session->wake.async_wait(asio::as_tuple(use_awaitable));
    }
  }
  co_return Status::Cancelled("stream server stopping");
}

asio::awaitable<Status> StreamServer::SendHeartbeat(Session& session) {
  Heartbeat hb;
  hb.sender_time_us = NowUs();
  hb.primary_wal_lsn = primary_wal_ ? primary_wal_() : Lsn();
  hb.source_commit = session.sent;
  std::string bytes;
  EncodeHeartbeat(hb, &bytes);
  co_return co_await session.stream.WriteFrame(FrameType::kHeartbeat, bytes);
}

asio::awaitable<Status> StreamServer::Receive(std::shared_ptr<Session> session) {
  while (!stopping_) {
    GEOSYNC_ASSIGN_OR_RETURN_CO(DecodedFrame frame,
                                co_await session->stream.ReadFrame(options_.peer_timeout));
    AckBound bound{session->sent, options_.epoch, primary_wal_ ? primary_wal_() : Lsn()};
    GEOSYNC_ASSIGN_OR_RETURN_CO(SiteFrame got, ReadSiteFrame(frame, bound, session->site));
    if (got.kind == SiteFrame::Kind::kRefusedAck) {
      // Nothing of it reaches the registry: a false ack could satisfy the
      // sync quorum or release spool the site still needs.
      if (options_.refusals) options_.refusals->Ack();
      spdlog::error("site {} ({}): refused ack, closing its session: {}", session->site,
                    session->stream.remote(), got.reason);
      co_return Status::Protocol(fmt::format("site {}: {}", session->site, got.reason));
    }
    if (got.kind == SiteFrame::Kind::kAck) registry_->Update(session->site, got.ack);
  }
  co_return Status::Cancelled("stream server stopping");
}

StreamServerOptions StreamServerOptions::FromConfig(const Config& config, uint64_t epoch) {
  StreamServerOptions o;
  o.cluster_id = config.cluster_id;
  o.site = config.site;
  o.epoch = epoch;
  if (config.listen) o.listen = *config.listen;
  o.compression_level = config.compression_level;
  o.heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  o.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  o.bandwidth_bytes_per_sec = config.bandwidth_bytes_per_sec;
  o.allow_plaintext = config.allow_plaintext_links;
  return o;
}

}  // namespace geosync
