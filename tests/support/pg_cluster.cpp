// Throwaway PostgreSQL clusters driven through initdb and pg_ctl.
#include "tests/support/pg_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "tests/support/ports.h"
#include "tests/support/test_env.h"

namespace geosync::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kDefaultBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kConfFile = "geosync_test.conf";
constexpr milliseconds kToolDeadline = seconds(120);

bool RunningAsRoot() { return geteuid() == 0; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status WriteFile(const std::string& path, const std::string& contents, bool append = false) {
  std::ofstream out(path, append ? std::ios::app : std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return Status::Io(fmt::format("cannot write {}", path));
  return Status::Ok();
}

// PostgreSQL refuses to run as root; as root the cluster belongs to `postgres`.
Status ChownToPostgres(const std::string& path, bool recursive) {
  if (!RunningAsRoot()) return Status::Ok();
  struct passwd* pw = getpwnam("postgres");
  if (pw == nullptr) {
    return Status::Config("running as root but there is no `postgres` OS user to run the server");
  }
  auto chown_one = [&](const fs::path& p) -> Status {
    if (lchown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Status::Io(fmt::format("chown {}: {}", p.string(), std::strerror(errno)));
    }
    return Status::Ok();
  };
  GEOSYNC_RETURN_IF_ERROR(chown_one(path));
  if (!recursive) return Status::Ok();
  for (const auto& entry : fs::recursive_directory_iterator(path)) {
    GEOSYNC_RETURN_IF_ERROR(chown_one(entry.path()));
  }
  return Status::Ok();
}

std::string RunuserPath() {
  for (const char* p : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "runuser";
}

std::vector<std::string> AsPostgres(std::vector<std::string> argv) {
  if (!RunningAsRoot()) return argv;
  std::vector<std::string> wrapped = {RunuserPath(), "-u", "postgres", "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

std::string Join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Runs a server-side tool (initdb, pg_ctl) as the cluster's owner; non-zero
// exit is an error carrying the tool's output.
Result<std::string> RunAsPostgres(const std::vector<std::string>& argv, const std::string& cwd,
                                  int cpu = -1) {
  ProcessSpec spec;
  spec.argv = AsPostgres(argv);
  spec.cwd = cwd;  // the test's cwd may not be readable by `postgres`
  spec.cpu = cpu;
  GEOSYNC_ASSIGN_OR_RETURN(ProcessOutput out, RunProgram(spec, kToolDeadline));
  if (out.exit_status != 0) {
    return Status::Io(fmt::format("`{}` failed ({}):\n{}", Join(spec.argv),
                                  DescribeExitStatus(out.exit_status), out.output));
  }
  return out.output;
}

std::string BinDirFromEnv() {
  const char* env = std::getenv("GEOSYNC_PG_BINDIR");
  return env != nullptr && *env != '\0' ? env : kDefaultBinDir;
}

Status CheckBinaries(const std::string& bindir) {
  for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
    std::string path = bindir + "/" + tool;
    if (access(path.c_str(), X_OK) != 0) {
      return Status::Config(
          fmt::format("PostgreSQL 15 server binary {} is missing or not executable ({}); install "
                      "postgresql-15 or point GEOSYNC_PG_BINDIR at its bin directory",
                      path, std::strerror(errno)));
    }
  }
  return Status::Ok();
}

Result<std::string> MakeTempDir(const std::string& label) {
  std::string safe;
  for (char c : label) safe += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  std::string tmpl = (fs::temp_directory_path() / fmt::format("geosync-{}-XXXXXX", safe)).string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    return Status::Io(fmt::format("mkdtemp {}: {}", tmpl, std::strerror(errno)));
  }
  GEOSYNC_RETURN_IF_ERROR(ChownToPostgres(tmpl, false));
  return tmpl;
}

// initdb plus the files every test cluster shares: trust for local and
// 127.0.0.1 (replication included), and an include of the per-cluster file.
Status InitDb(const std::string& bindir, const std::string& data_dir, const std::string& cwd) {
  GEOSYNC_RETURN_IF_ERROR(RunAsPostgres({bindir + "/initdb", "-D", data_dir, "-U", "postgres", "-A",
                                         "trust", "--no-sync", "-E", "UTF8", "--locale=C"},
                                        cwd)
                              .status());
  GEOSYNC_RETURN_IF_ERROR(WriteFile(data_dir + "/pg_hba.conf",
                                    "local all         all              trust\n"
                                    "local replication all              trust\n"
                                    "host  all         all 127.0.0.1/32 trust\n"
                                    "host  replication all 127.0.0.1/32 trust\n"));
  return WriteFile(data_dir + "/postgresql.conf", fmt::format("\ninclude '{}'\n", kConfFile),
                   /*append=*/true);
}

// Template data dirs, cached in the build tree so that every test process
// (ctest runs one per case) copies instead of running initdb. Published with
// a rename, so concurrent test processes never see a half-built template.
class TemplateStore {
 public:
  Result<std::string> DataDir(const std::string& bindir) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = dirs_.find(bindir); it != dirs_.end()) return it->second + "/data";
    // Bump the version when InitDb() changes what it writes.
    std::string final_dir =
        fmt::format("{}/pg-template-v1-{:016x}", BinaryDir(), std::hash<std::string>{}(bindir));
    if (!fs::exists(final_dir + "/data/PG_VERSION")) {
      GEOSYNC_RETURN_IF_ERROR(Build(bindir, final_dir));
    }
    dirs_[bindir] = final_dir;
    return final_dir + "/data";
  }

 private:
  static Status Build(const std::string& bindir, const std::string& final_dir) {
    GEOSYNC_ASSIGN_OR_RETURN(std::string scratch, MakeTempDir("pg-template"));
    std::string staging = fmt::format("{}.tmp-{}", final_dir, getpid());
    std::error_code ec;
    Status st = InitDb(bindir, scratch + "/data", scratch);
    if (st.ok()) {
      fs::create_directories(staging, ec);
      if (!ec) fs::copy(scratch + "/data", staging + "/data", fs::copy_options::recursive, ec);
      if (ec) st = Status::Io(fmt::format("copy template to {}: {}", staging, ec.message()));
    }
    fs::remove_all(scratch, ec);
    if (st.ok() && rename(staging.c_str(), final_dir.c_str()) != 0 &&
        !fs::exists(final_dir + "/data/PG_VERSION")) {
      st = Status::Io(fmt::format("rename {}: {}", staging, std::strerror(errno)));
    }
    fs::remove_all(staging, ec);  // left over when another process published first
    return st;
  }

  std::mutex mu_;
  std::map<std::string, std::string> dirs_;
};

TemplateStore& Templates() {
  static TemplateStore store;
  return store;
}

Result<uint16_t> PickFreePort() {
  try {
    return ClaimTcpPort();
  } catch (const std::exception& e) {
    return Status::Io(e.what());
  }
}

// Pids whose process group is `pgid` (the postmaster leads its own group:
// pg_ctl starts it with setsid()).
std::vector<pid_t> ProcessGroupMembers(pid_t pgid) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::string stat = ReadFile(entry.path().string() + "/stat");
    auto paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 2));
    char state = 0;
    pid_t ppid = 0;
    pid_t pgrp = 0;
    fields >> state >> ppid >> pgrp;
    if (pgrp == pgid) pids.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return pids;
}

// Waits until `pid` is gone, reaping it when it is our child. The postmaster
// becomes our child once pg_ctl exits, because we are a child subreaper (PID 1
// in a container often reaps nothing, and a zombie postmaster would make the
// next start fail with "lock file postmaster.pid already exists").
Status ReapOrWaitGone(pid_t pid, milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (true) {
    int wstatus = 0;
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) return Status::Ok();
    if (r < 0 && errno == ECHILD && !ProcessAlive(pid)) return Status::Ok();
    if (std::chrono::steady_clock::now() >= until) {
      return Status::Timeout(
          fmt::format("process {} still alive after {} ms", pid, deadline.count()));
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

void BecomeSubreaper() {
  static std::once_flag once;
  std::call_once(once, [] { prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); });
}

std::string QuoteSetting(const std::string& value) {
  std::string quoted = "'";
  for (char c : value) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  return quoted + "'";
}

std::string Tail(const std::string& s, size_t max_bytes) {
  return s.size() <= max_bytes ? s : "..." + s.substr(s.size() - max_bytes);
}

}  // namespace

PgCluster::PgCluster(PgClusterOptions options)
    : options_(std::move(options)), bindir_(BinDirFromEnv()) {
  const char* tmpl = std::getenv("GEOSYNC_PG_TEMPLATE");
  if (tmpl != nullptr && std::string(tmpl) == "1") options_.from_template = true;
  BecomeSubreaper();
}

PgCluster::~PgCluster() {
  if (root_.empty()) return;
  if (IsRunning()) {
    Status st = Stop(StopMode::kFast);
    if (!st.ok()) st = Stop(StopMode::kImmediate);
    if (!st.ok()) st = Kill9();
    if (!st.ok()) std::cerr << "cluster " << name() << ": " << st.ToString() << "\n";
  }
  const char* keep = std::getenv("GEOSYNC_KEEP_CLUSTERS");
  if (keep != nullptr && std::string(keep) == "1") {
    std::cerr << "GEOSYNC_KEEP_CLUSTERS=1: keeping " << root_ << "\n";
    return;
  }
  std::error_code ec;
  fs::remove_all(root_, ec);
  if (ec) std::cerr << "cannot remove " << root_ << ": " << ec.message() << "\n";
}

void PgCluster::SetSetting(const std::string& name, const std::string& value) {
  settings_[name] = value;
}

Status PgCluster::InitDataDir() {
  GEOSYNC_RETURN_IF_ERROR(CheckBinaries(bindir_));
  GEOSYNC_ASSIGN_OR_RETURN(root_, MakeTempDir("pg-" + options_.name));
  if (options_.from_template) {
    GEOSYNC_ASSIGN_OR_RETURN(std::string tmpl, Templates().DataDir(bindir_));
    std::error_code ec;
    fs::copy(tmpl, DataDir(), fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) return Status::Io(fmt::format("copy {} to {}: {}", tmpl, DataDir(), ec.message()));
    fs::permissions(DataDir(), fs::perms::owner_all, ec);
    GEOSYNC_RETURN_IF_ERROR(ChownToPostgres(DataDir(), /*recursive=*/true));
  } else {
    GEOSYNC_RETURN_IF_ERROR(InitDb(bindir_, DataDir(), root_));
  }
  initialized_ = true;
  return Status::Ok();
}

Status PgCluster::WriteConfig() const {
  std::map<std::string, std::string> settings = {
      {"listen_addresses", "127.0.0.1"},
      {"port", std::to_string(port_)},
      {"unix_socket_directories", root_},
      {"wal_level", "logical"},
      {"max_replication_slots", "20"},
      {"max_wal_senders", "20"},
      {"max_worker_processes", "16"},
      // Real durability: kill -9 tests rely on committed data surviving.
      {"fsync", "on"},
      {"synchronous_commit", "on"},
      {"shared_buffers", "64MB"},
      {"wal_sender_timeout", "60s"},
      {"log_line_prefix", "%m [%p] %q%a "},
      {"lc_messages", "C"},
  };
  for (const auto& [k, v] : settings_) settings[k] = v;
  std::string text = "# Written by the geosync test rig (tests/support/pg_cluster.cpp).\n";
  for (const auto& [k, v] : settings) text += fmt::format("{} = {}\n", k, QuoteSetting(v));
  std::string path = DataDir() + "/" + kConfFile;
  GEOSYNC_RETURN_IF_ERROR(WriteFile(path, text));
  return ChownToPostgres(path, false);
}

Status PgCluster::RunPgCtl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {bindir_ + "/pg_ctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunAsPostgres(argv, root_, options_.cpu).status();
}

Status PgCluster::Start() {
  if (!initialized_) {
    Status st = InitDataDir();
    if (!st.ok()) return st.WithContext(fmt::format("starting cluster {}", name()));
  }
  if (IsRunning()) return Status::InvalidArgument(fmt::format("cluster {} is running", name()));
  const bool fixed_port = port_ != 0;
  Status st;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!fixed_port) {
      GEOSYNC_ASSIGN_OR_RETURN(port_, PickFreePort());
    }
    bool clash = false;
    st = StartOnce(&clash);
    if (st.ok() || !clash) break;
    // Another process took the port between our probe and the server's bind.
    if (fixed_port) std::this_thread::sleep_for(milliseconds(200));
  }
  return st.ok() ? st : st.WithContext(fmt::format("starting cluster {}", name()));
}

Status PgCluster::StartOnce(bool* port_clash) {
  GEOSYNC_RETURN_IF_ERROR(WriteConfig());
  const size_t log_offset = ReadLog().size();
  Status st = RunPgCtl({"start", "-w", "-t", "60", "-D", DataDir(), "-l", LogPath()});
  if (st.ok()) return st;
  std::string log = ReadLog().substr(std::min(log_offset, ReadLog().size()));
  *port_clash = log.find("Address already in use") != std::string::npos;
  return Status::Io(
      fmt::format("{}\nserver log ({}):\n{}", st.message(), LogPath(), Tail(log, 4000)));
}

Status PgCluster::Stop(StopMode mode) {
  pid_t pid = PostmasterPid();
  if (pid == 0) return Status::Ok();
  const char* m = mode == StopMode::kFast ? "fast" : "immediate";
  Status st = RunPgCtl({"stop", "-w", "-t", "60", "-D", DataDir(), "-m", m});
  if (!st.ok()) return st.WithContext(fmt::format("stopping cluster {}", name()));
  return ReapOrWaitGone(pid, seconds(30));
}

Status PgCluster::Restart() {
  GEOSYNC_RETURN_IF_ERROR(Stop(StopMode::kFast));
  return Start();
}

Status PgCluster::Kill9() {
  pid_t pid = PostmasterPid();
  if (pid == 0) return Status::NotFound(fmt::format("cluster {} is not running", name()));
  std::vector<pid_t> members = {pid};
  if (getpgid(pid) == pid) {
    for (pid_t p : ProcessGroupMembers(pid)) {
      if (p != pid) members.push_back(p);
    }
    kill(-pid, SIGKILL);
  } else {
    kill(pid, SIGKILL);
  }
  for (pid_t p : members) {
    GEOSYNC_RETURN_IF_ERROR(ReapOrWaitGone(p, seconds(30)));
  }
  return Status::Ok();
}

pid_t PgCluster::PostmasterPid() const {
  if (root_.empty()) return 0;
  std::ifstream in(DataDir() + "/postmaster.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  return ProcessAlive(static_cast<pid_t>(pid)) ? static_cast<pid_t>(pid) : 0;
}

bool PgCluster::IsRunning() const { return PostmasterPid() != 0; }

Status PgCluster::Reload() {
  GEOSYNC_RETURN_IF_ERROR(WriteConfig());
  auto before = PgConn::Connect(ConnInfo());
  if (!before.ok()) return before.status().WithContext("reload");
  GEOSYNC_ASSIGN_OR_RETURN(std::string loaded, before->QueryValue("SELECT pg_conf_load_time()"));
  GEOSYNC_RETURN_IF_ERROR(RunPgCtl({"reload", "-D", DataDir()}));
  // The postmaster rereads the files asynchronously; new sessions see its
  // load time, so wait for it to move past the one before the signal.
  auto until = std::chrono::steady_clock::now() + seconds(30);
  std::string cmp = fmt::format("SELECT pg_conf_load_time() > '{}'::timestamptz", loaded);
  while (std::chrono::steady_clock::now() < until) {
    auto conn = PgConn::Connect(ConnInfo());
    if (conn.ok()) {
      auto newer = conn->QueryValue(cmp);
      if (newer.ok() && *newer == "t") return Status::Ok();
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  return Status::Timeout(fmt::format("cluster {} did not reload its configuration", name()));
}

std::string PgCluster::ConnInfo(const std::string& dbname) const {
  return fmt::format("host=127.0.0.1 port={} user=postgres dbname={}", port_, dbname);
}

PgConn PgCluster::Connect(const std::string& dbname) const {
  auto conn = PgConn::Connect(ConnInfo(dbname));
  if (!conn.ok()) {
    throw std::runtime_error(fmt::format("cluster {}: {}", name(), conn.status().ToString()));
  }
  return std::move(*conn);
}

PgResult PgCluster::Exec(const std::string& sql, const std::string& dbname) const {
  PgConn conn = Connect(dbname);
  auto r = conn.Exec(sql);
  if (!r.ok()) {
    throw std::runtime_error(fmt::format("cluster {}: {}", name(), r.status().ToString()));
  }
  return std::move(*r);
}

std::string PgCluster::QueryValue(const std::string& sql, const std::string& dbname) const {
  PgConn conn = Connect(dbname);
  auto v = conn.QueryValue(sql);
  if (!v.ok()) {
    throw std::runtime_error(fmt::format("cluster {}: {}", name(), v.status().ToString()));
  }
  return *v;
}

Lsn PgCluster::CurrentWalLsn() const {
  std::string text = QueryValue("SELECT pg_current_wal_lsn()");
  auto lsn = Lsn::Parse(text);
  if (!lsn.ok()) throw std::runtime_error(lsn.status().ToString());
  return *lsn;
}

void PgCluster::CreateDatabase(const std::string& dbname) const {
  PgConn conn = Connect();
  Exec("CREATE DATABASE " + conn.EscapeIdentifier(dbname));
}

Result<ProcessOutput> PgCluster::RunClientTool(const std::string& program,
                                               const std::vector<std::string>& args) const {
  ProcessSpec spec;
  spec.argv = {bindir_ + "/" + program};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {{"PGHOST", "127.0.0.1"}, {"PGPORT", std::to_string(port_)}, {"PGUSER", "postgres"}};
  spec.cpu = options_.cpu;
  return RunProgram(spec, milliseconds(seconds(600)));
}

std::string PgCluster::RunPgbench(const std::vector<std::string>& args) const {
  std::vector<std::string> full = {"-h", "127.0.0.1", "-p", std::to_string(port_),
                                   "-U", "postgres"};
  full.insert(full.end(), args.begin(), args.end());
  auto out = RunClientTool("pgbench", full);
  if (!out.ok()) throw std::runtime_error(out.status().ToString());
  if (out->exit_status != 0) {
    throw std::runtime_error(fmt::format("pgbench {} on cluster {} failed ({}):\n{}", Join(full),
                                         name(), DescribeExitStatus(out->exit_status),
                                         out->output));
  }
  return out->output;
}

std::string PgCluster::ReadLog() const { return root_.empty() ? "" : ReadFile(LogPath()); }

void PgCluster::DumpLog() const {
  std::cerr << fmt::format("===== server log of cluster {} ({}) =====\n{}===== end of {} =====\n",
                           name(), LogPath(), ReadLog(), name());
}

PgCluster& PgClusterTest::NewCluster(const std::string& name, PgClusterOptions options) {
  options.name = name;
  clusters_.push_back(std::make_unique<PgCluster>(std::move(options)));
  PgCluster& cluster = *clusters_.back();
  Status st = cluster.Start();
  if (!st.ok()) throw std::runtime_error(st.ToString());
  return cluster;
}

void PgClusterTest::TearDown() {
  if (HasFailure()) {
    for (const auto& c : clusters_) c->DumpLog();
  }
  clusters_.clear();
}

}  // namespace geosync::testing
