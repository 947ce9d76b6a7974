// What a replica runs of a captured DDL query string; see ddl_text.h.
#include "common/ddl_text.h"

#include <algorithm>
#include <cctype>
#include <initializer_list>

namespace geosync {
namespace {

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool IsWordStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_'; }
bool IsWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$';
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Index just past a quoted run that starts at `i` (at the opening quote);
// `quote` is ' or ". A doubled quote stays inside. With `backslash` (E'...'),
// a backslash escapes the next character. Unterminated: sql.size().
size_t SkipQuoted(std::string_view sql, size_t i, char quote, bool backslash) {
  for (++i; i < sql.size(); ++i) {
    if (backslash && sql[i] == '\\') {
      ++i;
    } else if (sql[i] == quote) {
      if (i + 1 < sql.size() && sql[i + 1] == quote) {
        ++i;
      } else {
        return i + 1;
      }
    }
  }
  return sql.size();
}

// At `i` a '$': if it opens a dollar quote ($$ or $tag$), the index past its
// end; otherwise npos.
size_t SkipDollarQuoted(std::string_view sql, size_t i) {
  size_t j = i + 1;
  if (j < sql.size() && sql[j] != '$') {
    if (!IsWordStart(sql[j])) return std::string_view::npos;
    while (j < sql.size() && IsWordChar(sql[j]) && sql[j] != '$') ++j;
    if (j >= sql.size() || sql[j] != '$') return std::string_view::npos;
  }
  if (j >= sql.size()) return std::string_view::npos;
  std::string_view tag = sql.substr(i, j - i + 1);
  size_t end = sql.find(tag, j + 1);
  return end == std::string_view::npos ? sql.size() : end + tag.size();
}

// At `i` a comment start ("--" or "/*"): the index past it; otherwise i.
size_t SkipComment(std::string_view sql, size_t i) {
  if (sql.substr(i, 2) == "--") {
    size_t nl = sql.find('\n', i);
    return nl == std::string_view::npos ? sql.size() : nl + 1;
  }
  if (sql.substr(i, 2) == "/*") {
    int depth = 0;
    while (i < sql.size()) {
      if (sql.substr(i, 2) == "/*") {
        ++depth;
        i += 2;
      } else if (sql.substr(i, 2) == "*/") {
        i += 2;
        if (--depth == 0) return i;
      } else {
        ++i;
      }
    }
    return sql.size();
  }
  return i;
}

}  // namespace

std::vector<std::string_view> SplitSqlStatements(std::string_view sql) {
  std::vector<std::string_view> out;
  size_t start = 0;
  size_t i = 0;
  int atomic_depth = 0;  // inside BEGIN ATOMIC ... END
  std::string prev_word;
  auto finish = [&](size_t end) {
    std::string_view s = Trim(sql.substr(start, end - start));
    if (!s.empty()) out.push_back(s);
    start = end + 1;
    atomic_depth = 0;
    prev_word.clear();
  };
  while (i < sql.size()) {
    char c = sql[i];
    if (c == '\'') {
      bool escape =
          i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') && (i < 2 || !IsWordChar(sql[i - 2]));
      i = SkipQuoted(sql, i, '\'', escape);
    } else if (c == '"') {
      i = SkipQuoted(sql, i, '"', false);
    } else if (c == '$' && (i == 0 || !IsWordChar(sql[i - 1]))) {
      size_t end = SkipDollarQuoted(sql, i);
      i = end == std::string_view::npos ? i + 1 : end;
    } else if (SkipComment(sql, i) != i) {
      i = SkipComment(sql, i);
    } else if (IsWordStart(c)) {
      size_t j = i;
      while (j < sql.size() && IsWordChar(sql[j])) ++j;
      std::string word = Upper(sql.substr(i, j - i));
      if (word == "ATOMIC" && prev_word == "BEGIN") {
        ++atomic_depth;
      } else if (atomic_depth > 0 && word == "CASE") {
        ++atomic_depth;
      } else if (atomic_depth > 0 && word == "END") {
        --atomic_depth;
      }
      prev_word = std::move(word);
      i = j;
    } else if (c == ';' && atomic_depth == 0) {
      finish(i);
      ++i;
    } else {
      ++i;
    }
  }
  if (start < sql.size()) finish(sql.size());
  return out;
}

std::string FirstKeyword(std::string_view statement) {
  size_t i = 0;
  while (i < statement.size()) {
    if (IsSpace(statement[i]) || statement[i] == '(') {
      ++i;
    } else if (SkipComment(statement, i) != i) {
      i = SkipComment(statement, i);
    } else {
      break;
    }
  }
  size_t j = i;
  while (j < statement.size() && IsWordChar(statement[j])) ++j;
  return Upper(statement.substr(i, j - i));
}

namespace {

// The statement's words, upper-cased, in order, up to `max`: quoted strings
// and identifiers become "'" and "\"", punctuation is skipped.
std::vector<std::string> Words(std::string_view sql, size_t max) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < sql.size() && out.size() < max) {
    char c = sql[i];
    if (c == '\'' || c == '"') {
      out.emplace_back(1, c);
      i = SkipQuoted(sql, i, c, false);
    } else if (c == '$' && SkipDollarQuoted(sql, i) != std::string_view::npos) {
      out.emplace_back("'");
      i = SkipDollarQuoted(sql, i);
    } else if (SkipComment(sql, i) != i) {
      i = SkipComment(sql, i);
    } else if (IsWordStart(c)) {
      size_t j = i;
      while (j < sql.size() && IsWordChar(sql[j])) ++j;
      out.push_back(Upper(sql.substr(i, j - i)));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

bool OneOf(const std::string& word, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), word) != set.end();
}

// CREATE/ALTER/DROP: the object kind after the modifiers.
DdlStatementVerdict ClassifyObjectCommand(const std::vector<std::string>& w) {
  size_t k = 1;
  while (k < w.size() &&
         OneOf(w[k], {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "UNIQUE",
                      "DEFAULT", "TRUSTED", "PROCEDURAL", "CONSTRAINT", "RECURSIVE"})) {
    ++k;
  }
  std::string object = k < w.size() ? w[k] : "";
  std::string next = k + 1 < w.size() ? w[k + 1] : "";
  bool cluster_wide =
      OneOf(object, {"ROLE", "GROUP", "DATABASE", "TABLESPACE", "SUBSCRIPTION", "SYSTEM"}) ||
      (object == "USER" && next != "MAPPING");
  if (cluster_wide || object.empty()) {
    return {DdlStatementKind::kRefused, w[0] + (object.empty() ? "" : " " + object)};
  }
  return {DdlStatementKind::kRun, w[0] + " " + object};
}

}  // namespace

DdlStatementVerdict ClassifyDdlStatement(std::string_view statement) {
  std::vector<std::string> w = Words(statement, 64);
  if (w.empty()) return {DdlStatementKind::kLeftOut, ""};
  const std::string& first = w[0];
  if (OneOf(first, {"CREATE", "ALTER", "DROP"})) return ClassifyObjectCommand(w);
  if (OneOf(first, {"COMMENT", "SECURITY", "REFRESH", "IMPORT"})) {
    return {DdlStatementKind::kRun, first};
  }
  if (first == "GRANT" || first == "REVOKE") {
    // Object privileges name their objects with ON before TO/FROM; without
    // ON it grants a role's membership, which is cluster-wide.
    const std::string_view stop = first == "GRANT" ? "TO" : "FROM";
    for (size_t k = 1; k < w.size() && w[k] != stop; ++k) {
      if (w[k] == "ON") return {DdlStatementKind::kRun, first};
    }
    return {DdlStatementKind::kRefused, first + " of a role"};
  }
  if (OneOf(first,
            {"BEGIN",    "START",   "COMMIT",   "END",     "ROLLBACK",   "ABORT",      "SAVEPOINT",
             "RELEASE",  "PREPARE", "INSERT",   "UPDATE",  "DELETE",     "MERGE",      "COPY",
             "TRUNCATE", "SELECT",  "WITH",     "VALUES",  "TABLE",      "SET",        "RESET",
             "SHOW",     "ANALYZE", "ANALYSE",  "VACUUM",  "CHECKPOINT", "EXPLAIN",    "LOCK",
             "NOTIFY",   "LISTEN",  "UNLISTEN", "DISCARD", "EXECUTE",    "DEALLOCATE", "DECLARE",
             "FETCH",    "MOVE",    "CLOSE",    "CLUSTER", "REINDEX"})) {
    return {DdlStatementKind::kLeftOut, first};
  }
  return {DdlStatementKind::kRefused, first};
}

DdlReplay DdlToReplay(std::string_view sql) {
  DdlReplay replay;
  std::vector<std::string_view> statements = SplitSqlStatements(sql);
  bool ended = false;  // a COMMIT, END or PREPARE TRANSACTION was seen
  for (std::string_view s : statements) {
    std::vector<std::string> w = Words(s, 2);
    std::string kw = w.empty() ? "" : w[0];
    if (ended && replay.refusal.empty()) {
      replay.refusal =
          "statements follow a COMMIT in one query string, so which of its "
          "transactions ran which DDL cannot be told";
    }
    if ((kw == "ROLLBACK" || kw == "ABORT") && replay.refusal.empty()) {
      replay.refusal =
          "the query string rolls back, so which of its DDL took effect cannot be told";
    }
    if (kw == "COMMIT" || kw == "END" ||
        (kw == "PREPARE" && w.size() > 1 && w[1] == "TRANSACTION")) {
      ended = true;
    }
    DdlStatementVerdict v = ClassifyDdlStatement(s);
    if (v.kind == DdlStatementKind::kRun) {
      if (!replay.sql.empty()) replay.sql += "; ";
      replay.sql += s;
    } else if (v.kind == DdlStatementKind::kLeftOut) {
      replay.skipped.emplace_back(s);
    } else {
      replay.refused.emplace_back(s);
      if (replay.refusal.empty()) {
        replay.refusal = v.what + " is never run by a replica";
      }
    }
  }
  if (statements.size() == 1 && !replay.sql.empty()) replay.sql = std::string(Trim(sql));
  if (replay.refusal.empty() && replay.sql.empty()) {
    replay.refusal =
        "it holds no DDL statement of an allowed kind (DDL run from inside a function, DO or "
        "CALL is not replicated)";
  }
  if (!replay.refusal.empty()) replay.sql.clear();
  return replay;
}

}  // namespace geosync
