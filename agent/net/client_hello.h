// The client half of a site link's handshake, shared by the replica's
// receiver and the seeder: after TLS, say Hello, read the source's answer and
// check it against what this site knows (common/handshake.h
// CheckSourceReply).
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <string>

#include "agent/net/peer_stream.h"
#include "common/control.h"
#include "common/handshake.h"
#include "common/link_refusals.h"
#include "common/status.h"

namespace geosync {

struct HelloExchange {
  std::string where;                 // "host:port" of the source, for messages
  bool seed = false;                 // a seed's Hello (kHelloNeedsSeed) rather than streaming's
  SourcePolicy policy;               // tls and peer_cn are taken from the stream
  LinkRefusals* refusals = nullptr;  // refused replies are counted here when set
  std::chrono::milliseconds timeout{10000};
};

// The Status for a source that refused this site's Hello: its code's
// (common/handshake.h RefusalCode), or always kFenced for a seed, which
// must not retry against a source that will not serve it.
Status RefusedBySource(const HelloReply& reply, const HelloExchange& x);

// The Status for a reply this site refuses (CheckSourceReply's verdict): a
// stale source is final (kFenced, not counted); any other is kProtocol,
// retried (the right source may come back at the address) and counted.
Status RefusedHere(const HelloVerdict& verdict, const HelloExchange& x);

// The accepted reply. Errors: the source's Error frame as its Status; a
// refusal by the source (its code's Status; always kFenced for a seed); a
// reply this site refuses (kFenced for a stale source, else kProtocol, and
// counted); a frame of another type (kProtocol).
asio::awaitable<Result<HelloReply>> ExchangeHello(PeerStream& stream, const Hello& hello,
                                                  HelloExchange x);

}  // namespace geosync
