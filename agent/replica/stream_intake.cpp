// StreamIntake: the receiver's frame handling, socket-free.
#include "agent/replica/stream_intake.h"

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {

StreamIntake::StreamIntake(Spool* spool)
    : spool_(spool), decoder_(std::make_unique<BatchDecoder>()) {}

Status StreamIntake::NewConnection() {
  if (spool_->failed()) {
    GEOSYNC_RETURN_IF_ERROR(spool_->ReopenWriter());
    unit_open_ = false;
  }
  if (unit_open_) {
    GEOSYNC_RETURN_IF_ERROR(spool_->AbandonIncompleteUnit());
    unit_open_ = false;
  }
  decoder_ = std::make_unique<BatchDecoder>();
  return Status::Ok();
}

Result<Intake> StreamIntake::OnFrame(const DecodedFrame& frame, uint64_t epoch) {
  switch (frame.type) {
    case FrameType::kData:
      return OnData(frame.payload, epoch);
    case FrameType::kHeartbeat: {
      Intake in;
      in.kind = Intake::Kind::kHeartbeat;
      GEOSYNC_ASSIGN_OR_RETURN(in.heartbeat, DecodeHeartbeat(AsBytes(frame.payload)));
      return in;
    }
    case FrameType::kError: {
      GEOSYNC_ASSIGN_OR_RETURN(ErrorMessage err, DecodeErrorMessage(AsBytes(frame.payload)));
      return err.ToStatus();
    }
    default:
      return Status::Protocol(
          fmt::format("unexpected frame type {} from the source", static_cast<int>(frame.type)));
  }
}

Result<Intake> StreamIntake::OnData(std::string_view payload, uint64_t epoch) {
  GEOSYNC_ASSIGN_OR_RETURN(std::vector<BatchRecord> records, decoder_->Decode(AsBytes(payload)));
  for (const auto& r : records) {
    if (r.epoch > epoch) {
      return Status::Fenced(fmt::format("record at {} is from an epoch above the source's {}",
                                        Position{r.epoch, r.lsn}.ToString(), epoch));
    }
  }
  Intake in;
  for (const auto& r : records) {
    GEOSYNC_RETURN_IF_ERROR(spool_->Append(r.epoch, r.lsn, r.flags, AsBytes(r.payload)));
    if (r.flags & kFirstInUnit) unit_open_ = true;
    if (r.flags & kLastInUnit) {
      unit_open_ = false;
      in.received = Position{r.epoch, r.lsn};
      in.units++;
    }
  }
  GEOSYNC_RETURN_IF_ERROR(spool_->Sync());
  in.records = records.size();
  in.durable = spool_->durable();
  return in;
}

}  // namespace geosync
