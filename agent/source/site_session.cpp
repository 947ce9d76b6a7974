// The socket-free steps of a site's stream session (see site_session.h).
#include "agent/source/site_session.h"

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {

Status FillBatch(SpoolReader& reader, BatchEncoder& encoder, size_t max_bytes, std::string* batch,
                 Position* last_sent) {
  while (batch->size() < max_bytes) {
    GEOSYNC_ASSIGN_OR_RETURN(std::optional<SpoolRecord> rec, reader.Next());
    if (!rec.has_value()) break;
    encoder.Append(rec->epoch, rec->lsn, rec->flags, rec->payload, batch);
    if (rec->last_in_unit()) *last_sent = rec->position();
  }
  return Status::Ok();
}

Result<SiteFrame> ReadSiteFrame(const DecodedFrame& frame, const AckBound& bound,
                                const std::string& site) {
  SiteFrame out;
  switch (frame.type) {
    case FrameType::kAck: {
      auto ack = DecodeAck(AsBytes(frame.payload));
      if (!ack.ok()) {
        return Status::Protocol(fmt::format("site {}: {}", site, ack.status().message()));
      }
      if (Status bad = CheckAck(*ack, bound); !bad.ok()) {
        out.kind = SiteFrame::Kind::kRefusedAck;
        out.reason = std::string(bad.message());
        return out;
      }
      out.kind = SiteFrame::Kind::kAck;
      out.ack = *ack;
      return out;
    }
    case FrameType::kHeartbeat:
      out.kind = SiteFrame::Kind::kHeartbeat;
      return out;
    case FrameType::kError: {
      GEOSYNC_ASSIGN_OR_RETURN(ErrorMessage err, DecodeErrorMessage(AsBytes(frame.payload)));
      return err.ToStatus();
    }
    default:
      return Status::Protocol(
          fmt::format("unexpected frame type {} from site {}", static_cast<int>(frame.type), site));
  }
}

}  // namespace geosync
