// The source's side of seeding. A replica connection whose Hello carries
// kHelloNeedsSeed is handed here by the StreamServer after the Hello was
// accepted. Two kinds of session (docs/seed.md):
//   manifest: a temporary logical slot exports a snapshot at consistent point
//     C; the schema (pg_dump), table list, chunks and sequences in that
//     snapshot go back in a SeedManifest; the site is retained in the spool
//     from C on; the replication connection stays idle (so the snapshot stays
//     importable) until the replica says SeedFinish or goes away.
//   chunk: one COPY of a page range of a published table in that snapshot,
//     streamed in SeedData frames, then SeedChunkEnd.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <string>

#include "agent/net/peer_stream.h"
#include "agent/source/site_registry.h"
#include "agent/spool/spool.h"
#include "common/config.h"
#include "common/control.h"
#include "common/seed_protocol.h"

namespace geosync::seed {

struct SeedServerOptions {
  std::string conninfo;  // the primary
  std::string publication = "geosync";
  uint64_t epoch = 1;
  uint64_t chunk_bytes = 32ull << 20;  // tables above this are split in page ranges
  uint64_t bandwidth_bytes_per_sec = 0;
  std::chrono::milliseconds peer_timeout{10000};
  static SeedServerOptions FromConfig(const Config& config, uint64_t epoch);
};

class SeedServer {
 public:
  SeedServer(SeedServerOptions options, Spool* spool, SiteRegistry* registry);

  // Serves one seed connection after its Hello was accepted.
  asio::awaitable<Status> Serve(const Hello& hello, PeerStream& stream);

 private:
  asio::awaitable<Status> ServeManifest(const std::string& site, PeerStream& stream);
  asio::awaitable<Status> ServeChunk(const std::string& site, const SeedRequest& request,
                                     PeerStream& stream);
  asio::awaitable<Result<SeedManifest>> ReadCatalog(const std::string& snapshot);

  SeedServerOptions options_;
  Spool* spool_;
  SiteRegistry* registry_;
  std::atomic<uint64_t> next_slot_{0};
};

// Page ranges of about `chunk_bytes` covering a table of `bytes`; the last
// one open-ended (end_page 0) so that rows on pages added later are copied
// too. Pure; exposed for tests.
std::vector<SeedChunk> PlanChunks(uint64_t bytes, uint64_t block_size, uint64_t chunk_bytes);

}  // namespace geosync::seed
