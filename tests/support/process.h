// Child processes for tests: geosyncd under test, and one-shot tools (initdb,
// pg_ctl, pgbench) run to completion. Always an argv vector, never a shell
// string; every child gets its own process group so a kill reaches its helpers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace geosync::testing {

struct ProcessSpec {
  // argv[0] is the program: a path, or a bare name looked up in PATH.
  std::vector<std::string> argv;
  // Added to (or replacing entries of) the inherited environment.
  std::vector<std::pair<std::string, std::string>> env;
  // stdout and stderr are appended to this file; empty inherits the test's.
  std::string log_path;
  // Working directory of the child; empty inherits the test's.
  std::string cwd;
  // >= 0: the child, and every process it starts, runs on this CPU only
  // (taskset -c), as the benchmarks' two emulated hosts need.
  int cpu = -1;
};

// Exit status as one int: the exit code (>= 0), or minus the signal number
// when a signal ended the process (-9 after SIGKILL).
using ExitStatus = int;
std::string DescribeExitStatus(ExitStatus status);

// A long-running child. Not thread-safe: drive it from the test thread.
// Start() may be called again after the process ended, which is how a test
// restarts a daemon it killed.
class ChildProcess {
 public:
  explicit ChildProcess(ProcessSpec spec);
  ~ChildProcess();  // SIGKILLs the process group and reaps the child
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  Status Start();
  // 0 before the first Start().
  pid_t Pid() const { return pid_; }
  // Reaps the child if it exited, so exit_status() is set afterwards.
  bool IsRunning();
  // Sends `signal` to the process itself (not its group).
  Status Kill(int signal);
  // SIGKILL to the whole process group, then reaps the child.
  Status Kill9();
  // Waits for the child to exit; Timeout when `deadline` passes first.
  Result<ExitStatus> Wait(std::chrono::milliseconds deadline);
  // Set once the child has been reaped.
  std::optional<ExitStatus> exit_status() const { return exit_status_; }
  const ProcessSpec& spec() const { return spec_; }
  // The contents of spec().log_path ("" when there is none).
  std::string ReadLog() const;

 private:
  ProcessSpec spec_;
  pid_t pid_ = 0;
  bool running_ = false;
  std::optional<ExitStatus> exit_status_;
};

struct ProcessOutput {
  ExitStatus exit_status = 0;
  std::string output;  // stdout and stderr interleaved
};

// Runs a program to completion and captures its output. Fails only when the
// program cannot be started or outlives `deadline` (then it is SIGKILLed);
// a non-zero exit is reported in exit_status for the caller to judge.
Result<ProcessOutput> RunProgram(ProcessSpec spec, std::chrono::milliseconds deadline);

// Whether a process with this pid exists and is not a zombie.
bool ProcessAlive(pid_t pid);

}  // namespace geosync::testing
