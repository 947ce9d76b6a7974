// Process exit codes of geosyncd and geosyncctl. This table is the contract
// documented in docs/exit-codes.md; scripts and systemd rely on it.
#pragma once

#include "common/status.h"

namespace geosync {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,       // an unexpected runtime failure
  kExitUsage = 2,         // bad command line (CLI11 parse error)
  kExitConfig = 3,        // missing/unreadable config, bad JSON, unknown key, wrong type...
  kExitPostgres = 4,      // PostgreSQL unreachable or returned an error
  kExitPeer = 5,          // a peer site or admin API is unreachable or broke the protocol
  kExitFenced = 6,        // refused by the epoch/fencing rules
  kExitCorruption = 7,    // on-disk or on-wire data failed its checksum
  kExitRefused = 8,       // a safety check refused the operation (use --force to override)
  kExitDifferent = 9,     // verify found differences
  kExitBehind = 10,       // verify: a replica did not reach the position in time (not compared)
  kExitDrillFailed = 11,  // drill: ran to its end, rolled back, but a probe failed (or the
                          // site could not be made writable or did not get back in sync)
};

inline int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kConfig:
      return kExitConfig;
    case Code::kPostgres:
      return kExitPostgres;
    case Code::kProtocol:
    case Code::kIo:
    case Code::kTimeout:
      return kExitPeer;
    case Code::kFenced:
      return kExitFenced;
    case Code::kCorruption:
      return kExitCorruption;
    case Code::kInvalidArgument:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

}  // namespace geosync
