// Receiver: the replica role's link to the source. It connects out (so DR
// sites reach the source through their own firewalls), says Hello with its
// cluster id, site, epoch and durable position, then writes every received
// record to its own spool, fsyncs, and acknowledges received/durable/applied.
// Reconnects with backoff (cut short by Stop()); never accepts a stream from
// a lower epoch.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "agent/net/peer_stream.h"
#include "agent/replica/stream_intake.h"
#include "agent/spool/spool.h"
#include "common/config.h"
#include "common/control.h"
#include "common/link_refusals.h"
#include "common/record_batch.h"

namespace geosync {

struct ReceiverOptions {
  std::string cluster_id;
  std::string site;
  Endpoint upstream;
  // Who may answer at `upstream` (common/handshake.h CheckSourceReply): the
  // source this site expects ("" when unknown) and the deployment's sites.
  std::string expected_source;
  std::vector<std::string> deployment_sites;
  LinkRefusals* refusals = nullptr;  // refused source replies are counted here
  std::shared_ptr<asio::ssl::context> tls;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds peer_timeout{10000};
  std::chrono::milliseconds max_backoff{5000};
  // The identity and timers of the config; who may answer, the refusal
  // counters and TLS are the role's to set.
  static ReceiverOptions FromConfig(const Config& config, Endpoint upstream);
};

struct ReceiverStatus {
  bool connected = false;
  std::string source_site;
  Position received;
  Position durable;
  Lsn primary_wal_lsn;         // from the source's heartbeats
  Position source_commit;      // newest commit the source had sent
  int64_t source_time_us = 0;  // source clock at its last heartbeat
  int64_t local_time_us = 0;   // our clock when that heartbeat arrived
  std::string last_error;
  uint64_t raw_bytes_in = 0, wire_bytes_in = 0, frames = 0, records = 0, reconnects = 0;
  uint64_t units = 0;  // complete units (transactions) written to the spool
};

class Receiver {
 public:
  // `epoch` is the site's current epoch: adopted upward (and persisted by
  // `on_new_epoch`) when an authenticated source is newer, within
  // kMaxEpochJump; a lower source epoch is refused.
  Receiver(asio::any_io_executor ex, ReceiverOptions options, Spool* spool, uint64_t epoch,
           std::function<Position()> applied, std::function<PgTimestamp()> applied_time,
           std::function<void()> on_durable, std::function<Status(uint64_t)> on_new_epoch);

  asio::awaitable<Status> Run();
  void Stop();
  ReceiverStatus status() const;
  uint64_t epoch() const { return epoch_; }

 private:
  asio::awaitable<Status> Session();
  asio::awaitable<Result<asio::ip::tcp::socket>> Connect(const std::string& where);
  asio::awaitable<Result<HelloReply>> SayHello(PeerStream& stream, const std::string& where,
                                               Position durable);
  asio::awaitable<Status> ReceiveLoop(PeerStream& stream);
  asio::awaitable<Status> AckLoop(PeerStream& stream);
  // Reports what the intake did with a frame.
  void Report(const Intake& in, const PeerStream& stream);

  asio::any_io_executor ex_;
  ReceiverOptions options_;
  Spool* spool_;
  std::atomic<uint64_t> epoch_;
  std::function<Position()> applied_;
  std::function<PgTimestamp()> applied_time_;
  std::function<void()> on_durable_;
  std::function<Status(uint64_t)> on_new_epoch_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  ReceiverStatus status_;
  StreamIntake intake_;
  bool ack_due_ = false;
  std::unique_ptr<asio::steady_timer> ack_wake_;
  // The reconnect backoff and the socket being connected: Stop() cancels
  // both, so a promotion or a re-point never waits out a backoff.
  asio::steady_timer backoff_timer_;
  tcp::socket* connecting_ = nullptr;
  PeerStream* current_ = nullptr;
};

}  // namespace geosync
