// StreamIntake: what the receiver does with each frame from the source,
// without a socket. A Data batch is decoded, checked against the site's
// epoch, written to the spool and fsynced, keeping track of the unit it
// leaves open; a heartbeat is decoded for the lag figures; an Error frame
// becomes the source's status. The Receiver owns one, feeds it the frames it
// reads and reports what it returns; unit tests feed it frames directly.
#pragma once

#include <memory>
#include <string_view>

#include "agent/spool/spool.h"
#include "common/codec.h"
#include "common/control.h"
#include "common/lsn.h"
#include "common/record_batch.h"
#include "common/status.h"

namespace geosync {

struct Intake {
  enum class Kind { kData, kHeartbeat };
  Kind kind = Kind::kData;
  // kData: the records written, the units they completed, the end of the
  // last completed unit (invalid when none completed) and the spool's
  // durable end after the fsync.
  uint64_t records = 0;
  uint64_t units = 0;
  Position received;
  Position durable;
  // kHeartbeat
  Heartbeat heartbeat;
};

class StreamIntake {
 public:
  explicit StreamIntake(Spool* spool);

  // Before each connection: a write that failed (a full disk) left the
  // spool refusing writes, so it is cut back to its durable end; a unit cut
  // short by the last connection is abandoned (the source sends it again
  // from its start). The batch decoder starts afresh, as the source's
  // encoder does for a new session.
  Status NewConnection();

  // One frame from the source, for a site at `epoch`. A record from an
  // epoch above it is refused (kFenced) before anything of the batch is
  // written. Error frames return the source's status; any other frame type
  // is a protocol error.
  Result<Intake> OnFrame(const DecodedFrame& frame, uint64_t epoch);

  bool unit_open() const { return unit_open_; }

 private:
  Result<Intake> OnData(std::string_view payload, uint64_t epoch);

  Spool* spool_;
  std::unique_ptr<BatchDecoder> decoder_;
  bool unit_open_ = false;
};

}  // namespace geosync
