// Checks of a site's PostgreSQL: what geosyncd needs to start
// (CheckPostgresForRole) and check-config's full audit (AuditPostgres), which
// reports every problem with the setting or statement that fixes it.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace geosync {

// One line of a check-config report. `code` is kOk when the check passed;
// otherwise it decides the exit code (kConfig: a setting to change, kPostgres:
// the server is unreachable or failed, kIo/kTimeout: a peer is unreachable).
struct CheckItem {
  std::string subject;  // "wal_level", "table public.events", "upstream 10.0.0.5:7450"
  Code code = Code::kOk;
  std::string found;     // what was seen
  std::string fix;       // what to change; empty when ok, unless a warning
  bool warning = false;  // passed, but `fix` is advised (e.g. TLS off)
  bool ok() const { return code == Code::kOk; }

  static CheckItem Failed(std::string subject, Code code, std::string found, std::string fix) {
    CheckItem item;
    item.subject = std::move(subject);
    item.code = code;
    item.found = std::move(found);
    item.fix = std::move(fix);
    return item;
  }
};

// Replication slots and WAL senders geosync itself may hold at once on a
// site: the stream's slot plus one temporary slot while a site is seeded.
inline constexpr int kGeosyncSlotsNeeded = 2;

// Connects to the site's PostgreSQL (5 s timeout unless PGCONNECT_TIMEOUT is
// set) and checks what the role needs to start: wal_level = logical on a
// source. Errors name the setting to change.
Status CheckPostgresForRole(const Config& config);

class PgConn;
// A source refuses to run while PUBLIC may run pg_logical_emit_message on
// its database (`geosyncctl init` revokes it): the error names the fix.
Status CheckControlMessagesProtected(PgConn& conn, const std::string& site);

// check-config: connects, then checks wal_level, max_replication_slots,
// max_wal_senders, the REPLICATION attribute of the user and the replica
// identity of every table the publication covers (or would cover: the
// publication is created by the source and every site may become the source).
// Returns every finding, passed or not; a failed connection is one finding.
std::vector<CheckItem> AuditPostgres(const Config& config);

}  // namespace geosync
