// What a replica runs of a captured DDL query string. The DDL event trigger
// (schemas/ddl_capture.sql) can only see the client's whole query string
// (current_query()), and emits it once per transaction. A string such as
// "BEGIN; ALTER TABLE t ADD c int; UPDATE t SET c = 1; COMMIT;" must not be
// replayed whole: its COMMIT would end the replica's apply transaction (and
// with it exactly-once apply), and its UPDATE already arrives as row changes.
// Pure functions, no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace geosync {

// Splits `sql` into its top-level statements at semicolons outside quotes
// ('...', E'...', "..."), dollar quotes ($tag$...$tag$), comments (-- and
// nested /* */) and SQL-standard function bodies (BEGIN ATOMIC ... END).
// Each statement is returned trimmed of surrounding space, without its
// semicolon; empty statements are left out.
std::vector<std::string_view> SplitSqlStatements(std::string_view sql);

// The first keyword of a statement, upper-cased ("" if none), skipping
// leading comments and parentheses.
std::string FirstKeyword(std::string_view statement);

struct DdlReplay {
  std::string sql;                   // what to run: "" when nothing is left
  std::vector<std::string> skipped;  // statements left out, in order
};

// The part of a captured query string that a replica runs. A single
// statement is run as it is. Of several, transaction control (BEGIN, START,
// COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION) and
// data statements (INSERT, UPDATE, DELETE, MERGE, COPY, TRUNCATE, SELECT,
// WITH, VALUES, TABLE), whose effects arrive as row changes, are left out;
// the rest is joined with "; ".
DdlReplay DdlToReplay(std::string_view sql);

}  // namespace geosync
