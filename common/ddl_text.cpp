// What a replica runs of a captured DDL query string; see ddl_text.h.
#include "common/ddl_text.h"

#include <algorithm>
#include <array>
#include <cctype>

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

DdlReplay DdlToReplay(std::string_view sql) {
  static constexpr std::array<std::string_view, 18> kLeftOut = {
      "BEGIN",  "START",  "COMMIT", "END",  "ROLLBACK", "ABORT",  "SAVEPOINT", "RELEASE", "INSERT",
      "UPDATE", "DELETE", "MERGE",  "COPY", "TRUNCATE", "SELECT", "WITH",      "VALUES",  "TABLE"};
  DdlReplay replay;
  std::vector<std::string_view> statements = SplitSqlStatements(sql);
  if (statements.size() <= 1) {
    replay.sql = std::string(Trim(sql));
    return replay;
  }
  for (std::string_view s : statements) {
    std::string kw = FirstKeyword(s);
    bool left_out = std::find(kLeftOut.begin(), kLeftOut.end(), kw) != kLeftOut.end();
    if (kw == "PREPARE") {
      std::string_view rest = Trim(s.substr(s.find_first_of(" \t\r\n") == std::string_view::npos
                                                ? s.size()
                                                : s.find_first_of(" \t\r\n")));
      left_out = FirstKeyword(rest) == "TRANSACTION";
    }
    if (left_out) {
      replay.skipped.emplace_back(s);
    } else {
      if (!replay.sql.empty()) replay.sql += "; ";
      replay.sql += s;
    }
  }
  return replay;
}

}  // namespace geosync
