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
// than 0 is an error carrying its stderr.
Result<std::string> RunAndCapture(const std::vector<std::string>& argv);

// pg_dump --schema-only --section=`section` (pre-data or post-data) of
// `tables` (schema, name) in `snapshot`, without owners, privileges or psql
// meta-commands. An empty table list gives "".
Result<std::string> DumpSchema(const std::string& conninfo, const std::string& snapshot,
                               const std::vector<std::pair<std::string, std::string>>& tables,
                               const std::string& section);

// Drops psql meta-command lines (\restrict, \unrestrict, ...) from a
// plain-format dump, so that the SQL runs through libpq.
std::string StripMetaCommands(const std::string& sql);

}  // namespace geosync::seed
