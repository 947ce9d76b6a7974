// posix_spawn-based child processes: own process group, default signal
// dispositions, stdin from /dev/null, stdout+stderr to a file.
#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

extern char** environ;

namespace geosync::testing {
namespace {

ExitStatus FromWaitStatus(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return -WTERMSIG(wstatus);
  return -1000;
}

std::vector<std::string> BuildEnv(const ProcessSpec& spec) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::string_view key = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& [k, v] : spec.env) overridden = overridden || k == key;
    if (!overridden) env.emplace_back(entry);
  }
  for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// RAII for the two posix_spawn attribute objects.
struct SpawnAttrs {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnAttrs() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnAttrs() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

Result<pid_t> Spawn(const ProcessSpec& spec, const std::string& out_path) {
  if (spec.argv.empty()) return Status::InvalidArgument("ProcessSpec.argv is empty");
  SpawnAttrs sa;
  posix_spawn_file_actions_addopen(&sa.actions, 0, "/dev/null", O_RDONLY, 0);
  if (!out_path.empty()) {
    posix_spawn_file_actions_addopen(&sa.actions, 1, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&sa.actions, 1, 2);
  }
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&sa.actions, spec.cwd.c_str());

  // Own process group so that Kill9() reaches helpers; signals the test
  // runner may ignore or block are reset so the child behaves as in production.
  posix_spawnattr_setflags(&sa.attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&sa.attr, 0);
  sigset_t mask;
  sigemptyset(&mask);
  posix_spawnattr_setsigmask(&sa.attr, &mask);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigdefault(&sa.attr, &defaults);

  std::vector<std::string> argv_strings = spec.argv;
  if (spec.cpu >= 0) {
    argv_strings.insert(argv_strings.begin(), {"taskset", "-c", std::to_string(spec.cpu)});
  }
  std::vector<std::string> env_strings = BuildEnv(spec);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &sa.actions, &sa.attr, argv.data(), envp.data());
  if (rc != 0) {
    return Status::Io(fmt::format("cannot start {}: {}", spec.argv[0], std::strerror(rc)));
  }
  return pid;
}

// Polls waitpid with a short backoff; nullopt when the deadline passed.
std::optional<ExitStatus> WaitPid(pid_t pid, std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    int wstatus = 0;
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) return FromWaitStatus(wstatus);
    if (r < 0 && errno != EINTR) return -1000;  // not our child any more
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string DescribeExitStatus(ExitStatus status) {
  if (status >= 0) return fmt::format("exit code {}", status);
  if (status == -1000) return "unknown exit status";
  return fmt::format("killed by signal {} ({})", -status, strsignal(-status));
}

ChildProcess::ChildProcess(ProcessSpec spec) : spec_(std::move(spec)) {}

ChildProcess::~ChildProcess() {
  if (running_) (void)Kill9();
}

Status ChildProcess::Start() {
  if (IsRunning()) return Status::InvalidArgument(fmt::format("{} is already running", pid_));
  GEOSYNC_ASSIGN_OR_RETURN(pid_t pid, Spawn(spec_, spec_.log_path));
  pid_ = pid;
  running_ = true;
  exit_status_.reset();
  return Status::Ok();
}

bool ChildProcess::IsRunning() {
  if (!running_) return false;
  if (auto st = WaitPid(pid_, std::chrono::milliseconds(0))) {
    running_ = false;
    exit_status_ = *st;
  }
  return running_;
}

Status ChildProcess::Kill(int signal) {
  if (!IsRunning()) return Status::NotFound(fmt::format("process {} is not running", pid_));
  if (kill(pid_, signal) != 0) {
    return Status::Io(fmt::format("kill({}, {}): {}", pid_, signal, std::strerror(errno)));
  }
  return Status::Ok();
}

Status ChildProcess::Kill9() {
  if (pid_ == 0) return Status::NotFound("process was never started");
  // The group outlives its leader when the leader forked helpers.
  kill(-pid_, SIGKILL);
  if (!running_) return Status::Ok();
  auto st = WaitPid(pid_, std::chrono::seconds(30));
  if (!st) return Status::Timeout(fmt::format("process {} survived SIGKILL for 30s", pid_));
  running_ = false;
  exit_status_ = *st;
  return Status::Ok();
}

Result<ExitStatus> ChildProcess::Wait(std::chrono::milliseconds deadline) {
  if (!running_) {
    if (exit_status_) return *exit_status_;
    return Status::NotFound("process was never started");
  }
  auto st = WaitPid(pid_, deadline);
  if (!st) {
    return Status::Timeout(fmt::format("{} (pid {}) still running after {} ms", spec_.argv[0], pid_,
                                       deadline.count()));
  }
  running_ = false;
  exit_status_ = *st;
  return *st;
}

std::string ChildProcess::ReadLog() const {
  return spec_.log_path.empty() ? std::string() : ReadFile(spec_.log_path);
}

Result<ProcessOutput> RunProgram(ProcessSpec spec, std::chrono::milliseconds deadline) {
  char path[] = "/tmp/geosync-run-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return Status::Io(fmt::format("mkstemp: {}", std::strerror(errno)));
  close(fd);
  std::string out_path = path;
  auto pid = Spawn(spec, out_path);
  if (!pid.ok()) {
    unlink(out_path.c_str());
    return pid.status();
  }
  std::optional<ExitStatus> st = WaitPid(*pid, deadline);
  if (!st) {
    kill(-*pid, SIGKILL);
    WaitPid(*pid, std::chrono::seconds(10));
  }
  ProcessOutput result;
  result.output = ReadFile(out_path);
  unlink(out_path.c_str());
  if (!spec.log_path.empty()) {
    std::ofstream(spec.log_path, std::ios::app) << result.output;
  }
  std::string command;
  for (const auto& a : spec.argv) command += (command.empty() ? "" : " ") + a;
  if (!st) {
    return Status::Timeout(fmt::format("`{}` did not finish within {} ms; output:\n{}", command,
                                       deadline.count(), result.output));
  }
  result.exit_status = *st;
  return result;
}

bool ProcessAlive(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  if (!in) return false;
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The state follows the last ')' (the command name may contain parentheses).
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace geosync::testing
