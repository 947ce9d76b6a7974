// Receiver: source stream into the replica spool, with acks.
#include "agent/replica/receiver.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/net/client_hello.h"
#include "common/clock.h"
#include "common/encoding.h"
#include "common/handshake.h"
#include "common/record_batch.h"

namespace geosync {

using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

Receiver::Receiver(asio::any_io_executor ex, ReceiverOptions options, Spool* spool, uint64_t epoch,
                   std::function<Position()> applied, std::function<PgTimestamp()> applied_time,
                   std::function<void()> on_durable, std::function<Status(uint64_t)> on_new_epoch)
    : ex_(std::move(ex)),
      options_(std::move(options)),
      spool_(spool),
      epoch_(epoch),
      applied_(std::move(applied)),
      applied_time_(std::move(applied_time)),
      on_durable_(std::move(on_durable)),
      on_new_epoch_(std::move(on_new_epoch)),
      intake_(spool),
      backoff_timer_(ex_) {
  status_.durable = spool_->durable();
  status_.received = status_.durable;
}

void Receiver::Stop() {
  stopping_ = true;
  asio::post(ex_, [this] {
    if (current_) current_->Close();
    if (ack_wake_) ack_wake_->cancel();
    if (connecting_) {
      boost::system::error_code ignored;
      connecting_->close(ignored);
    }
    backoff_timer_.cancel();
  });
}

ReceiverStatus Receiver::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

asio::awaitable<Status> Receiver::Run() {
  auto backoff = std::chrono::milliseconds(100);
  while (!stopping_) {
    auto started = std::chrono::steady_clock::now();
    Status st = co_await Session();
    if (stopping_) break;
    {
      std::lock_guard lock(mu_);
      status_.connected = false;
      status_.last_error = st.ToString();
      status_.reconnects++;
    }
    if (st.code() == Code::kFenced || st.code() == Code::kConfig ||
        st.code() == Code::kCorruption) {
      co_return st;
    }
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) {
      backoff = std::chrono::milliseconds(100);  // the link was up for a while
    }
    spdlog::warn("receiver: {}; reconnecting in {} ms", st.ToString(), backoff.count());
    if (stopping_) break;
    backoff_timer_.expires_after(backoff);
    co_await backoff_timer_.async_wait(asio::as_tuple(use_awaitable));
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  co_return Status::Cancelled("receiver stopped");
}

// A TCP connection to the upstream within peer_timeout; Stop() cuts it short.
asio::awaitable<Result<tcp::socket>> Receiver::Connect(const std::string& where) {
  tcp::resolver resolver(ex_);
  auto [rec, endpoints] = co_await resolver.async_resolve(options_.upstream.host,
                                                          std::to_string(options_.upstream.port),
                                                          asio::as_tuple(use_awaitable));
  if (rec) {
    co_return Status::Io(
        fmt::format("cannot resolve upstream {}: {}", options_.upstream.host, rec.message()));
  }
  tcp::socket socket(ex_);
  asio::steady_timer timer(ex_, options_.peer_timeout);
  connecting_ = &socket;
  auto connected =
      co_await (asio::async_connect(socket, endpoints, asio::as_tuple(use_awaitable)) ||
                timer.async_wait(asio::as_tuple(use_awaitable)));
  connecting_ = nullptr;
  if (stopping_) co_return Status::Cancelled("receiver stopped");
  if (connected.index() == 1) co_return Status::Timeout("connecting to source " + where);
  if (auto [ec, ep] = std::get<0>(connected); ec) {
    co_return Status::Io(fmt::format("connecting to source {}: {}", where, ec.message()));
  }
  co_return std::move(socket);
}

// Hello with what the spool holds; the source's accepted reply. A higher
// epoch in it is adopted (and persisted) before anything is received.
asio::awaitable<Result<HelloReply>> Receiver::SayHello(PeerStream& stream, const std::string& where,
                                                       Position durable) {
  Hello hello;
  hello.cluster_id = options_.cluster_id;
  hello.site_name = options_.site;
  hello.epoch = epoch_;
  hello.durable = durable;
  hello.flags = kHelloAcceptsZstd;
  HelloExchange exchange;
  exchange.where = where;
  exchange.policy.self = options_.site;
  exchange.policy.epoch = epoch_;
  exchange.policy.expected_site = options_.expected_source;
  exchange.policy.sites = options_.deployment_sites;
  exchange.refusals = options_.refusals;
  exchange.timeout = options_.peer_timeout;
  GEOSYNC_ASSIGN_OR_RETURN_CO(HelloReply reply,
                              co_await ExchangeHello(stream, hello, std::move(exchange)));
  if (reply.source_epoch > epoch_) {
    GEOSYNC_RETURN_IF_ERROR_CO(on_new_epoch_ ? on_new_epoch_(reply.source_epoch) : Status::Ok());
    spdlog::info("receiver: adopted epoch {} from source {}", reply.source_epoch,
                 reply.source_site);
    epoch_ = reply.source_epoch;
  }
  co_return reply;
}

asio::awaitable<Status> Receiver::Session() {
  GEOSYNC_RETURN_IF_ERROR_CO(intake_.NewConnection());
  const std::string where = fmt::format("{}:{}", options_.upstream.host, options_.upstream.port);
  GEOSYNC_ASSIGN_OR_RETURN_CO(tcp::socket socket, co_await Connect(where));
  PeerStream stream(std::move(socket), options_.tls, /*compression_level=*/0);
  current_ = &stream;
  {
    // Whatever the last connection left incomplete was abandoned: acks start
    // from what the spool holds, which the source counts as held.
    std::lock_guard lock(mu_);
    status_.durable = status_.received = spool_->durable();
  }
  struct Reset {
    Receiver* r;
    ~Reset() { r->current_ = nullptr; }
  } reset{this};
  GEOSYNC_RETURN_IF_ERROR_CO(co_await stream.Handshake(false, options_.peer_timeout));
  const Position durable = spool_->durable();
  GEOSYNC_ASSIGN_OR_RETURN_CO(HelloReply reply, co_await SayHello(stream, where, durable));
  {
    std::lock_guard lock(mu_);
    status_.connected = true;
    status_.source_site = reply.source_site;
    status_.last_error.clear();
  }
  spdlog::info("receiver: streaming from {} ({}) after {}", reply.source_site, where,
               durable.ToString());
  ack_wake_ = std::make_unique<asio::steady_timer>(ex_);
  auto result = co_await (ReceiveLoop(stream) || AckLoop(stream));
  ack_wake_.reset();
  co_return result.index() == 0 ? std::get<0>(result) : std::get<1>(result);
}

asio::awaitable<Status> Receiver::ReceiveLoop(PeerStream& stream) {
  while (!stopping_) {
    GEOSYNC_ASSIGN_OR_RETURN_CO(DecodedFrame frame,
                                co_await stream.ReadFrame(options_.peer_timeout));
    GEOSYNC_ASSIGN_OR_RETURN_CO(Intake in, intake_.OnFrame(frame, epoch_));
    Report(in, stream);
    if (in.kind == Intake::Kind::kData) {
      if (on_durable_) on_durable_();
      ack_due_ = true;
      if (ack_wake_) ack_wake_->cancel();
    }
  }
  co_return Status::Cancelled("receiver stopped");
}

void Receiver::Report(const Intake& in, const PeerStream& stream) {
  std::lock_guard lock(mu_);
  if (in.kind == Intake::Kind::kHeartbeat) {
    status_.primary_wal_lsn = in.heartbeat.primary_wal_lsn;
    status_.source_commit = in.heartbeat.source_commit;
    status_.source_time_us = in.heartbeat.sender_time_us;
    status_.local_time_us = NowUs();
    return;
  }
  status_.records += in.records;
  status_.units += in.units;
  if (in.received.lsn.valid()) status_.received = in.received;
  status_.durable = in.durable;
  status_.raw_bytes_in = stream.counters().raw_in;
  status_.wire_bytes_in = stream.counters().wire_in;
  status_.frames++;
}

asio::awaitable<Status> Receiver::AckLoop(PeerStream& stream) {
  while (!stopping_) {
    ack_due_ = false;
    Ack ack;
    {
      std::lock_guard lock(mu_);
      ack.received = status_.received;
      ack.durable = status_.durable;
    }
    ack.applied = applied_ ? applied_() : Position{};
    ack.applied_commit_time = applied_time_ ? applied_time_() : 0;
    std::string bytes;
    EncodeAck(ack, &bytes);
    GEOSYNC_RETURN_IF_ERROR_CO(co_await stream.WriteFrame(FrameType::kAck, bytes));
    if (!ack_due_) {
      ack_wake_->expires_after(options_.heartbeat);
      co_await ack_wake_->async_wait(asio::as_tuple(use_awaitable));
    }
  }
  co_return Status::Cancelled("receiver stopped");
}

ReceiverOptions ReceiverOptions::FromConfig(const Config& config, Endpoint upstream) {
  ReceiverOptions o;
  o.cluster_id = config.cluster_id;
  o.site = config.site;
  o.upstream = std::move(upstream);
  o.heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  o.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  return o;
}

}  // namespace geosync
