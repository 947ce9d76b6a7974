// The schema half of a seed: pg_dump --schema-only of the published tables in
// the seed's exported snapshot, as plain SQL that libpq can run.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace geosync::seed {

// Directory of PostgreSQL's client programs: `pg_config --bindir` when it
// has pg_dump, else /usr/lib/postgresql/15/bin.
std::string PgBinDir();

// Runs argv[0] (a path) with argv, capturing stdout; an exit status other
// than 0 is an error carrying its stderr. `env` ("NAME=value") is added to
// the child's environment (and overrides the same names), not to ours.
Result<std::string> RunAndCapture(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& env = {});

// A child process's command line and the environment it needs beyond ours.
struct ChildCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "NAME=value"
};

// libpq `conninfo` (key=value or URI) split for a child process such as
// pg_dump: every parameter but the password as a key=value conninfo (for
// --dbname), the password as PGPASSWORD=... for the environment, because a
// command line is visible to every user of the host (ps, /proc/PID/cmdline).
// InvalidArgument when libpq cannot parse it (the message has no password).
Result<ChildCommand> SplitConninfoForChild(const std::string& conninfo);

// `conninfo` with its dbname replaced by `dbname`, as a key=value conninfo
// for this process's own libpq connections (the password stays in it: never
// put the result on a command line; SplitConninfoForChild does that split).
Result<std::string> ConninfoWithDbname(const std::string& conninfo, const std::string& dbname);

// The pg_dump command of DumpSchema, without running it.
Result<ChildCommand> PgDumpCommand(const std::string& bindir, const std::string& conninfo,
                                   const std::string& snapshot,
                                   const std::vector<std::pair<std::string, std::string>>& tables,
                                   const std::string& section);

// pg_dump --schema-only --section=`section` (pre-data or post-data) of
// `tables` (schema, name) in `snapshot`, without owners, privileges or psql
// meta-commands. An empty table list gives "".
Result<std::string> DumpSchema(const std::string& conninfo, const std::string& snapshot,
                               const std::vector<std::pair<std::string, std::string>>& tables,
                               const std::string& section);

// Drops psql meta-command lines (\restrict, \unrestrict, ...) from a
// plain-format dump, so that the SQL runs through libpq, and the source's
// write guard triggers (each site has its own).
std::string StripMetaCommands(const std::string& sql);

}  // namespace geosync::seed
