// The replica database's side of a seed, blocking libpq: preparing the
// tables (create from the schema dump, or truncate for a re-seed), loading
// rows with COPY FROM STDIN, then indexes, sequences and the replication
// origin at the consistent point.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "agent/pg/pg_conn.h"
#include "common/seed_protocol.h"

namespace geosync::seed {

// Connects with the session settings every seed connection uses: replica
// role (no user or FK triggers), the text formats the source COPYs in.
Result<PgConn> ConnectForSeed(const std::string& conninfo);

// Which of the manifest's tables exist in the replica database.
Result<std::vector<bool>> ExistingTables(PgConn& conn, const SeedManifest& m);

// "schema.name" quoted as SQL needs it.
std::string QualifiedName(PgConn& conn, const std::string& schema, const std::string& name);

// Drops the manifest's tables that exist (CASCADE): the remains of an
// interrupted seed that had created them.
Status DropTables(PgConn& conn, const SeedManifest& m);
// Creates the tables' schemas if needed and runs the pre-data SQL.
Status CreateSchema(PgConn& conn, const SeedManifest& m);
// Empties every table of the manifest in one statement (a re-seed).
Status TruncateTables(PgConn& conn, const SeedManifest& m);
// Post-data SQL (indexes, constraints), when `created` the schema.
Status RunPostData(PgConn& conn, const SeedManifest& m);
// setval() for each sequence of the manifest that exists here.
Status SetSequences(PgConn& conn, const SeedManifest& m);
// Drops every origin named <prefix>_e*, then creates <prefix>_e<epoch> at
// the consistent point: the applier resumes right after it.
Status SetOrigin(PgConn& conn, const std::string& prefix, Position consistent);

// One chunk's COPY into the replica: Begin, Put... , End (which commits).
class CopyIn {
 public:
  explicit CopyIn(PgConn* conn) : conn_(conn) {}
  Status Begin(const SeedTable& table);
  Status Put(std::span<const uint8_t> bytes);
  Status End();

 private:
  PgConn* conn_;
  std::string table_;
};

}  // namespace geosync::seed
