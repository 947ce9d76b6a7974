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

// What a replica does with one statement of a captured DDL string.
enum class DdlStatementKind {
  kRun,      // DDL of an allowed kind: run as the message's author
  kLeftOut,  // transaction control, data (arrives as row changes), session
             // settings and maintenance: its effect is not the replica's to repeat
  kRefused,  // never run: roles, databases, tablespaces, subscriptions,
             // ALTER SYSTEM, DO, CALL, LOAD and any kind not known to be DDL
};

struct DdlStatementVerdict {
  DdlStatementKind kind = DdlStatementKind::kRefused;
  std::string what;  // e.g. "CREATE ROLE", "DO"; the reason a refusal names
};

// The allow-list. Pure: looks only at the statement's leading keywords (and
// for GRANT/REVOKE whether an ON clause names objects rather than roles).
DdlStatementVerdict ClassifyDdlStatement(std::string_view statement);

struct DdlReplay {
  std::string sql;                   // what to run: "" when nothing is left
  std::vector<std::string> skipped;  // statements left out, in order
  std::vector<std::string> refused;  // statements never run, in order
  // Non-empty: the whole string is refused (nothing of it runs), and why.
  // A string whose transaction structure a replica cannot reproduce
  // (ROLLBACK, or statements after its COMMIT: the trigger cannot tell which
  // of its transactions this message belongs to), or with nothing to run.
  std::string refusal;
};

// The part of a captured query string that a replica runs: its kRun
// statements joined with "; ", in order. kLeftOut statements are reported in
// `skipped`, kRefused ones in `refused`.
DdlReplay DdlToReplay(std::string_view sql);

}  // namespace geosync
