// The socket-free steps of a site's stream session on the source: filling a
// Data batch from the spool, and judging each frame the site sends back. The
// StreamServer runs them between its reads and writes; unit tests run them
// on a real spool without a connection.
#pragma once

#include <string>

#include "agent/spool/spool.h"
#include "common/codec.h"
#include "common/control.h"
#include "common/handshake.h"
#include "common/lsn.h"
#include "common/record_batch.h"
#include "common/status.h"

namespace geosync {

// Appends the reader's records to `batch` (through `encoder`, which keeps
// the session's relation state) until the batch holds `max_bytes` or the
// reader is at the spool's durable end. `last_sent` moves to the end of each
// complete unit appended, never into a unit. Errors are the reader's: a
// released segment (the site needs a re-seed) or a corrupt record.
Status FillBatch(SpoolReader& reader, BatchEncoder& encoder, size_t max_bytes, std::string* batch,
                 Position* last_sent);

struct SiteFrame {
  enum class Kind { kAck, kHeartbeat, kRefusedAck };
  Kind kind = Kind::kHeartbeat;
  Ack ack;             // kAck: to record in the registry
  std::string reason;  // kRefusedAck: the claim and its bound (CheckAck)
};

// One frame from `site`: an ack within `bound` (kAck), a heartbeat, or an
// ack that claims more than the session sent or the primary wrote
// (kRefusedAck: nothing of it may reach the registry). An Error frame is the
// site's status; a malformed ack or any other frame type is a protocol error
// naming the site.
Result<SiteFrame> ReadSiteFrame(const DecodedFrame& frame, const AckBound& bound,
                                const std::string& site);

}  // namespace geosync
