// pg_dump as a child process: fork/exec with stdout and stderr on pipes.
#include "agent/seed/pg_dump.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <libpq-fe.h>

extern char** environ;

namespace geosync::seed {
namespace {

// A conninfo value in single quotes, with ' and \ escaped.
std::string QuoteConninfoValue(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// Our environment with `extra` ("NAME=value") replacing or adding names.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& x : extra) replaced = replaced || x.substr(0, x.find('=')) == name;
    if (!replaced) out.emplace_back(entry);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

std::string QuotePattern(const std::string& ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string PgBinDir() {
  auto from_pg_config = RunAndCapture({"/usr/bin/pg_config", "--bindir"});
  if (from_pg_config.ok()) {
    std::string dir = *from_pg_config;
    while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
    if (std::filesystem::exists(dir + "/pg_dump")) return dir;
  }
  return "/usr/lib/postgresql/15/bin";
}

Result<std::string> RunAndCapture(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& env) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    return Status::Io(fmt::format("pipe: {}", std::strerror(errno)));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return Status::Io(fmt::format("pipe: {}", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // Built before fork: the child only calls async-signal-safe functions.
  const std::vector<std::string> child_env = ChildEnvironment(env);
  std::vector<char*> envp;
  for (const auto& e : child_env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Status::Io(fmt::format("fork for {}: {}", argv[0], std::strerror(errno)));
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  std::string out, err;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open = 2;
  char buf[65536];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? out : err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        open--;
      }
    }
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return Status::Io(fmt::format("{} failed (exit status {}): {}", argv[0],
                                  WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, err));
  }
  return out;
}

// The parameters set in `conninfo` (key=value or URI), in libpq's order.
static Result<std::vector<std::pair<std::string, std::string>>> ParseConninfo(
    const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &err);
  if (options == nullptr) {
    std::string why = err ? err : "out of memory";
    PQfreemem(err);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return Status::InvalidArgument(fmt::format("postgres.dsn is not a valid conninfo: {}", why));
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr && *o->val != '\0') out.emplace_back(o->keyword, o->val);
  }
  PQconninfoFree(options);
  return out;
}

Result<ChildCommand> SplitConninfoForChild(const std::string& conninfo) {
  GEOSYNC_ASSIGN_OR_RETURN(auto params, ParseConninfo(conninfo));
  ChildCommand out;
  std::string rest;
  for (const auto& [key, value] : params) {
    if (key == "password") {
      out.env.push_back(fmt::format("PGPASSWORD={}", value));
      continue;
    }
    if (!rest.empty()) rest += ' ';
    rest += fmt::format("{}={}", key, QuoteConninfoValue(value));
  }
  out.argv.push_back("--dbname=" + rest);
  return out;
}

Result<std::string> ConninfoWithDbname(const std::string& conninfo, const std::string& dbname) {
  GEOSYNC_ASSIGN_OR_RETURN(auto params, ParseConninfo(conninfo));
  std::string out;
  for (const auto& [key, value] : params) {
    if (key != "dbname") out += fmt::format("{}={} ", key, QuoteConninfoValue(value));
  }
  return out + "dbname=" + QuoteConninfoValue(dbname);
}

Result<ChildCommand> PgDumpCommand(const std::string& bindir, const std::string& conninfo,
                                   const std::string& snapshot,
                                   const std::vector<std::pair<std::string, std::string>>& tables,
                                   const std::string& section) {
  GEOSYNC_ASSIGN_OR_RETURN(ChildCommand connection, SplitConninfoForChild(conninfo));
  ChildCommand cmd;
  cmd.argv = {bindir + "/pg_dump",      "--schema-only",     "--section=" + section,
              "--snapshot=" + snapshot, "--no-privileges",   "--no-tablespaces",
              "--no-publications",      "--no-subscriptions"};
  for (const auto& [schema, name] : tables) {
    cmd.argv.push_back("--table=" + QuotePattern(schema) + "." + QuotePattern(name));
  }
  cmd.argv.insert(cmd.argv.end(), connection.argv.begin(), connection.argv.end());
  cmd.env = std::move(connection.env);
  return cmd;
}

Result<std::string> DumpSchema(const std::string& conninfo, const std::string& snapshot,
                               const std::vector<std::pair<std::string, std::string>>& tables,
                               const std::string& section) {
  if (tables.empty()) return std::string();
  GEOSYNC_ASSIGN_OR_RETURN(ChildCommand cmd,
                           PgDumpCommand(PgBinDir(), conninfo, snapshot, tables, section));
  auto out = RunAndCapture(cmd.argv, cmd.env);
  if (!out.ok()) {
    return out.status().WithContext(
        fmt::format("pg_dump --section={} in snapshot {}", section, snapshot));
  }
  return StripMetaCommands(*out);
}

std::string StripMetaCommands(const std::string& sql) {
  std::istringstream in(sql);
  std::string line, out;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '\\') continue;
    // The source's write guard, with its own start time: the replica puts
    // its own on every table (agent/pg/write_guard.h).
    if (line.rfind("CREATE TRIGGER geosync_write_guard ", 0) == 0) continue;
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace geosync::seed
