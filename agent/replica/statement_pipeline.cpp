// The applier's libpq pipeline (statement_pipeline.h).
#include "agent/replica/statement_pipeline.h"

#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace geosync {

// A libpq error result (or a dead connection) as a Status with its SQLSTATE.
Status PgError(PGconn* conn, const PGresult* r) {
  std::string sqlstate;
  std::string message;
  if (r != nullptr) {
    if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) sqlstate = s;
    if (const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)) message = m;
    if (const char* d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)) {
      message += fmt::format(" ({})", d);
    }
    if (message.empty()) message = PQresultErrorMessage(r);
  }
  if (message.empty() && conn != nullptr) message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  if (sqlstate.empty() && (conn == nullptr || PQstatus(conn) != CONNECTION_OK)) {
    sqlstate = "08006";  // connection failure
  }
  if (sqlstate.empty()) sqlstate = "XX000";
  return Status::Postgres(message, sqlstate);
}

Status ConnectionLost(PGconn* conn, std::string_view doing) {
  return PgError(conn, nullptr).WithContext(doing);
}

StatementPipeline::StatementPipeline(PgConn* conn, int statements_per_sync, NameError name_error)
    : conn_(conn),
      statements_per_sync_(std::max(1, statements_per_sync)),
      name_error_(std::move(name_error)) {}

void StatementPipeline::Reset() {
  in_pipeline_ = false;
  expected_.clear();
  unsynced_ = 0;
  syncs_outstanding_ = 0;
}

Status StatementPipeline::Enter() {
  if (in_pipeline_) return Status::Ok();
  if (PQenterPipelineMode(conn_->get()) != 1) {
    return ConnectionLost(conn_->get(), "entering pipeline mode");
  }
  in_pipeline_ = true;
  return Status::Ok();
}

Status StatementPipeline::Exit() {
  if (!in_pipeline_) return Status::Ok();
  if (PQexitPipelineMode(conn_->get()) != 1) {
    return ConnectionLost(conn_->get(), "leaving pipeline mode");
  }
  in_pipeline_ = false;
  return Status::Ok();
}

Status StatementPipeline::SendPrepared(const StatementCache::Entry& entry, bool created,
                                       std::span<const Datum* const> params, Expected expected) {
  if (created) {
    static_assert(sizeof(Oid) == sizeof(uint32_t));
    const Oid* types = entry.param_types.empty()
                           ? nullptr
                           : reinterpret_cast<const Oid*>(entry.param_types.data());
    if (PQsendPrepare(conn_->get(), entry.name.c_str(), entry.sql.c_str(), entry.nparams, types) !=
        1) {
      return ConnectionLost(conn_->get(), "sending a prepare");
    }
    expected_.push_back(Expected(Expected::kPrepare, expected.unit, expected.target));
    unsynced_++;
  }
  values_.clear();
  lengths_.clear();
  formats_.clear();
  for (const Datum* d : params) {
    const bool null = d->kind == DatumKind::kNull;
    values_.push_back(null ? nullptr : d->value.c_str());
    lengths_.push_back(static_cast<int>(d->value.size()));
    formats_.push_back(d->kind == DatumKind::kBinary ? 1 : 0);
  }
  if (PQsendQueryPrepared(conn_->get(), entry.name.c_str(), static_cast<int>(params.size()),
                          values_.data(), lengths_.data(), formats_.data(), 0) != 1) {
    return ConnectionLost(conn_->get(), "sending a statement");
  }
  expected_.push_back(std::move(expected));
  if (++unsynced_ >= statements_per_sync_) {
    // Two sync segments in flight: the server works on one while we send
    // the next, and neither side's buffers grow without bound.
    GEOSYNC_RETURN_IF_ERROR(Sync());
    GEOSYNC_RETURN_IF_ERROR(Drain(1));
  }
  return Status::Ok();
}

Status StatementPipeline::SendSimple(const std::string& sql, std::vector<std::string> params,
                                     Expected expected) {
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  if (PQsendQueryParams(conn_->get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) != 1) {
    return ConnectionLost(conn_->get(), "sending a statement");
  }
  expected_.push_back(std::move(expected));
  unsynced_++;
  return Status::Ok();
}

Status StatementPipeline::Sync() {
  if (PQpipelineSync(conn_->get()) != 1) return ConnectionLost(conn_->get(), "sending a sync");
  expected_.push_back(Expected(Expected::kSync));
  syncs_outstanding_++;
  unsynced_ = 0;
  return Status::Ok();
}

Status StatementPipeline::Drain(int keep_syncs) {
  while (syncs_outstanding_ > keep_syncs && !expected_.empty()) {
    GEOSYNC_RETURN_IF_ERROR(TakeResult());
  }
  return Status::Ok();
}

// libpq's socket is non-blocking underneath: PQconsumeInput reads what has
// arrived, and PQisBusy says whether the next result is complete.
Result<bool> StatementPipeline::DrainArrived() {
  while (syncs_outstanding_ > 0 && !expected_.empty()) {
    if (PQconsumeInput(conn_->get()) == 0) return ConnectionLost(conn_->get(), "reading results");
    if (PQisBusy(conn_->get()) != 0) return false;
    GEOSYNC_RETURN_IF_ERROR(TakeResult());
  }
  return true;
}

Status StatementPipeline::TakeResult() {
  Expected e = std::move(expected_.front());
  expected_.pop_front();
  PGresult* raw = PQgetResult(conn_->get());
  if (raw == nullptr) return ConnectionLost(conn_->get(), "reading results");
  PgResult r(raw);
  if (e.kind == Expected::kSync) {
    if (PQresultStatus(raw) != PGRES_PIPELINE_SYNC) {
      return ConnectionLost(conn_->get(), "reading a pipeline sync");
    }
    syncs_outstanding_--;
    return Status::Ok();
  }
  NoteResult(e, raw);
  while (PGresult* extra = PQgetResult(conn_->get())) PQclear(extra);
  if (PQstatus(conn_->get()) != CONNECTION_OK) {
    return error_.retryable() ? error_ : ConnectionLost(conn_->get(), "reading results");
  }
  return Status::Ok();
}

void StatementPipeline::NoteResult(const Expected& e, PGresult* r) {
  const ExecStatusType status = PQresultStatus(r);
  if (status == PGRES_PIPELINE_ABORTED) return;  // follows an error already noted
  if (!error_.ok()) return;                      // keep the first
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Status err = PgError(conn_->get(), r);
    error_ = err.retryable() ? err : name_error_(e.unit, e.target, err);
    return;
  }
  switch (e.kind) {
    case Expected::kChange:
      if (e.expect_rows > 0) {
        const std::string_view n = PQcmdTuples(r);
        if (n != std::to_string(e.expect_rows)) {
          error_ = name_error_(
              e.unit, e.target,
              Status::NotFound(fmt::format(
                  "row not found: an update by key of {} row(s) changed {}", e.expect_rows, n)));
        }
      } else if (e.must_match && std::string_view(PQcmdTuples(r)) == "0") {
        // Logical replication would log and go on; a DR copy must not
        // silently diverge, so apply stops.
        error_ = name_error_(e.unit, e.target, Status::NotFound("row not found: " + e.key));
      }
      break;
    case Expected::kSequence:
      if (PQntuples(r) == 0) {
        spdlog::warn("apply: sequence snapshot: {} does not exist on the replica",
                     e.target.substr(4));
      }
      break;
    case Expected::kCommit:
      if (std::string_view(PQcmdStatus(r)) != "COMMIT") {
        error_ = Status::Postgres("the replica transaction was rolled back at COMMIT", "40000");
      }
      break;
    default:
      break;
  }
}

}  // namespace geosync
