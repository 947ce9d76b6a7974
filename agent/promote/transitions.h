// The steps a site takes between two roles, run by RunDaemon while no role
// is running (no capture, no apply, no stream), plus the source's fence.
//
//   source --fence--> fenced source (still serving) --demote--> replica
//   replica --promote--> source (new epoch)
//   source --stale--> fenced (a higher epoch exists elsewhere)
//
// Each is idempotent: run again after a crash at any point, it finishes.
#pragma once

#include <string>

#include "agent/promote/site_control.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// Source side of a switchover, while the source keeps serving its spool:
// makes the database read-only, ends its write sessions, and emits the final
// geosync.marker. Returns the marker's LSN: once the spool holds it, the
// spool holds every transaction the primary committed.
Result<Lsn> FenceForSwitchover(const Config& config, const std::string& target, uint64_t epoch);

// Replica -> source (the replica role stopped with everything applied):
// lifts the database's fence, raises sequences (by `next.sequence_gap`
// increments beyond what was used), stores the epoch, creates the
// publication and a fresh slot, and records where the old epoch ended.
Status Promote(SiteControl& control, const NextRole& next);

// Fenced old source -> replica of `next.source_site`: drops its slot, marks
// its own data as applied up to its last spooled position (so nothing is
// applied twice), and keeps the database read-only for applications.
Status Demote(SiteControl& control, const NextRole& next);

// A switchover was called off before the target was promoted: lifts the
// source's fence and forgets the promotion; the site stays the source.
Status Unfence(SiteControl& control);

// A higher epoch exists elsewhere: fences the database read-only and marks
// the site fenced; it ships and applies nothing until rejoined.
Status FenceStale(SiteControl& control, const std::string& reason);

}  // namespace geosync
