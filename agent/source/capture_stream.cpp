// Capture, pgoutput protocol version 2 streaming: chunks of in-progress
// transactions go to StreamSpill; a Stream Commit replays the transaction
// through HandleMessage as Begin / Relations / changes / Commit, exactly what
// a transaction sent at commit produces, at that point in stream order.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/source/capture.h"

namespace geosync {

// A message inside a streamed block: it belongs to the block's top-level xid
// (streamed_xid is the subtransaction that made it, or the xid itself).
Status Capture::HandleStreamed(PgOutputMessage message, std::span<const uint8_t> payload) {
  if (!spill_) {
    return Status::Protocol("pgoutput streamed message received but streaming was not requested");
  }
  if (auto* rel = std::get_if<Relation>(&message.body)) {
    // PostgreSQL does not always describe a relation again after a streamed
    // transaction (its apply worker applies these at once too), and a
    // relation described in a subtransaction that is rolled back is not
    // described again later in the same transaction: keep it now; the spilled
    // copy puts the schema in effect at each change back in place at replay.
    relations_.Update(*rel);
  } else if (std::holds_alternative<TypeMessage>(message.body)) {
    return Status::Ok();  // type names are not needed downstream
  }
  stats_.spilled_bytes += payload.size();
  return spill_->Append(stream_xid_, *message.streamed_xid, payload);
}

Status Capture::HandleStreamControl(const PgOutputBody& body) {
  if (in_txn_) {
    return Status::Protocol(fmt::format("pgoutput {} inside the transaction of xid {}",
                                        PgOutputMessageName(body), xid_));
  }
  if (const auto* start = std::get_if<StreamStart>(&body)) {
    stats_.stream_starts++;
    pgoutput_.in_streamed_block = true;
    stream_xid_ = start->xid;
    return spill_->Start(start->xid, start->first_segment);
  }
  if (std::holds_alternative<StreamStop>(body)) {
    pgoutput_.in_streamed_block = false;
    return spill_->Flush(stream_xid_);
  }
  if (const auto* abort = std::get_if<StreamAbort>(&body)) {
    if (abort->subxid == abort->xid && spill_->Has(abort->xid)) stats_.stream_aborts++;
    return spill_->Abort(abort->xid, abort->subxid);
  }
  return StartReplay(std::get<StreamCommit>(body));
}

Status Capture::StartReplay(const StreamCommit& commit) {
  BeginEvent begin;
  begin.xid = commit.xid;
  begin.final_lsn = commit.commit_lsn;
  begin.commit_time = commit.commit_time;
  GEOSYNC_RETURN_IF_ERROR(HandleMessage(PgOutputMessage{begin, std::nullopt}));
  if (!spill_->Has(commit.xid)) {
    // Nothing was streamed for it on this connection: an empty transaction.
    spill_->Drop(commit.xid);
    CommitEvent end{commit.xid, commit.commit_lsn, commit.end_lsn, commit.commit_time};
    stats_.streamed_transactions++;
    return HandleMessage(PgOutputMessage{end, std::nullopt});
  }
  GEOSYNC_ASSIGN_OR_RETURN(SpillReader reader, spill_->OpenReader(commit.xid));
  replay_.emplace(Replay{commit, std::move(reader)});
  return Status::Ok();
}

// One spilled record through HandleMessage; the Commit after the last one.
Status Capture::ReplayNext() {
  Replay& r = *replay_;
  Result<bool> more = r.reader.Next(&replay_record_);
  if (!more.ok()) return more.status();
  if (!*more) {
    CommitEvent end{r.commit.xid, r.commit.commit_lsn, r.commit.end_lsn, r.commit.commit_time};
    spill_->Drop(r.commit.xid);
    replay_.reset();
    replay_record_.clear();
    replay_record_.shrink_to_fit();
    stats_.streamed_transactions++;
    return HandleMessage(PgOutputMessage{end, std::nullopt});
  }
  PgOutputOptions opts = pgoutput_;
  opts.in_streamed_block = true;
  auto decoded = DecodePgOutput(replay_record_, opts);
  Status st = decoded.ok() ? Status::Ok() : decoded.status();
  if (st.ok()) {
    decoded->streamed_xid.reset();
    st = HandleMessage(std::move(decoded).value());
  }
  if (!st.ok()) {
    return st.WithContext(fmt::format("replaying streamed xid {} from spill file {} offset {}",
                                      r.commit.xid, r.reader.path(), r.reader.record_offset()));
  }
  return Status::Ok();
}

}  // namespace geosync
