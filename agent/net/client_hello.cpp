// The client half of a site link's handshake (client_hello.h).
#include "agent/net/client_hello.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"

namespace geosync {

Status RefusedBySource(const HelloReply& reply, const HelloExchange& x) {
  if (x.seed) {
    return Status::Fenced(fmt::format("source {} ({}) refused to seed this site ({}): {}",
                                      reply.source_site, x.where, HelloRefusalName(reply.code),
                                      reply.error));
  }
  return Status(RefusalCode(reply.code),
                fmt::format("source {} ({}) refused this site ({}): {}", reply.source_site, x.where,
                            HelloRefusalName(reply.code), reply.error));
}

Status RefusedHere(const HelloVerdict& verdict, const HelloExchange& x) {
  const std::string msg = fmt::format("{}refusing source at {} ({}): {}", x.seed ? "seed: " : "",
                                      x.where, HelloRefusalName(verdict.code), verdict.message);
  if (verdict.code == HelloRefusal::kStaleSource) return Status::Fenced(msg);
  if (x.refusals) x.refusals->Source(HelloRefusalName(verdict.code));
  spdlog::error("{}{}", x.seed ? "" : "receiver: ", msg);
  return Status::Protocol(msg);
}

asio::awaitable<Result<HelloReply>> ExchangeHello(PeerStream& stream, const Hello& hello,
                                                  HelloExchange x) {
  std::string bytes;
  EncodeHello(hello, &bytes);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await stream.WriteFrame(FrameType::kHello, bytes));
  GEOSYNC_ASSIGN_OR_RETURN_CO(DecodedFrame frame, co_await stream.ReadFrame(x.timeout));
  if (frame.type == FrameType::kError) {
    GEOSYNC_ASSIGN_OR_RETURN_CO(ErrorMessage err, DecodeErrorMessage(AsBytes(frame.payload)));
    co_return err.ToStatus();
  }
  if (frame.type != FrameType::kHelloReply) {
    co_return Status::Protocol(fmt::format("source {} answered {} with frame type {}", x.where,
                                           x.seed ? "a seed Hello" : "Hello",
                                           static_cast<int>(frame.type)));
  }
  GEOSYNC_ASSIGN_OR_RETURN_CO(HelloReply reply, DecodeHelloReply(AsBytes(frame.payload)));
  if (!reply.accepted) co_return RefusedBySource(reply, x);
  x.policy.tls = stream.tls();
  if (x.policy.tls) x.policy.peer_cn = stream.PeerCommonName();
  HelloVerdict verdict = CheckSourceReply(reply, x.policy);
  if (!verdict.ok()) co_return RefusedHere(verdict, x);
  co_return reply;
}

}  // namespace geosync
