// geosyncctl init: installs DDL capture into the primary database.
// geosyncctl tail: prints a database's decoded stream, one line per
// transaction; confirms nothing unless --confirm.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "agent/ctl/commands.h"
#include "agent/pg/pg_conn.h"
#include "agent/source/capture.h"
#include "common/exit_codes.h"
#include "common/txn_printer.h"

namespace geosync::ctl {
namespace {

std::string SchemaFile(const std::string& name) {
  for (const char* dir : {GEOSYNC_SOURCE_DIR "/schemas", "/usr/share/geosync/schemas",
                          "/usr/local/share/geosync/schemas"}) {
    std::string path = std::string(dir) + "/" + name;
    if (std::ifstream(path)) return path;
  }
  return name;
}

int RunInit(const std::string& dsn) {
  auto conn = PgConn::Connect(dsn);
  if (!conn.ok()) return Fail(conn.status());
  auto level = conn->QueryValue("SHOW wal_level");
  if (!level.ok()) return Fail(level.status());
  if (*level != "logical") {
    return Fail(Status::Config(fmt::format(
        "wal_level is {} on this server; set wal_level = logical and restart PostgreSQL", *level)));
  }
  std::string path = SchemaFile("ddl_capture.sql");
  std::ifstream in(path);
  if (!in) return Fail(Status::Config(fmt::format("cannot read {}", path)));
  std::stringstream sql;
  sql << in.rdbuf();
  // Local commit: with synchronous_standby_names naming geosync (commit
  // policy sync), a commit waiting for a standby that is not streaming yet
  // would hang init, and the slot creation behind it.
  // session_replication_role = replica: the script's own DDL is neither
  // captured by an earlier install's event trigger nor refused by the guard.
  auto r = conn->Exec(
      "SET synchronous_commit = local;\nSET session_replication_role = replica;\n"
      "BEGIN;\n" +
      sql.str() + "\nCOMMIT;");
  if (!r.ok()) return Fail(r.status().WithContext("installing " + path));
  std::cout << "installed DDL capture (event trigger geosync_ddl_capture) and the write guard "
               "(schema _geosync) from "
            << path << "\n";
  return kExitOk;
}

class TailSink final : public CaptureSink {
 public:
  TailSink(TxnPrinter::Format format, bool confirm, uint64_t limit, std::function<void()> done)
      : printer_(format, [](const std::string& line) { std::cout << line << std::endl; }),
        confirm_(confirm),
        limit_(limit),
        done_(std::move(done)) {}
  Status OnEvent(const Event& event) override {
    printer_.Feed(event);
    if (const auto* c = std::get_if<CommitEvent>(&event)) {
      if (confirm_) durable_ = c->end_lsn;
      if (limit_ && printer_.transactions() >= limit_) done_();
    }
    return Status::Ok();
  }
  Status OnIdle() override { return Status::Ok(); }
  Status OnReconnect() override { return Status::Ok(); }
  Lsn DurableLsn() override { return durable_; }

 private:
  TxnPrinter printer_;
  bool confirm_;
  uint64_t limit_;
  std::function<void()> done_;
  Lsn durable_;
};

struct TailArgs {
  std::string dsn;
  std::string slot = "geosync_tail";
  std::string publication = "geosync";
  std::string format = "text";
  bool confirm = false;
  bool temporary = false;
  uint64_t limit = 0;
  int timeout_s = 0;
};

int RunTail(const TailArgs& a) {
  asio::io_context io;
  CaptureOptions opt;
  opt.conninfo = a.dsn;
  opt.slot = a.slot;
  opt.publication = a.publication;
  opt.temporary_slot = a.temporary;
  opt.max_attempts = 3;
  std::unique_ptr<Capture> capture;
  TailSink sink(a.format == "json" ? TxnPrinter::Format::kJson : TxnPrinter::Format::kText,
                a.confirm, a.limit, [&] { capture->Stop(); });
  capture = std::make_unique<Capture>(io.get_executor(), opt, sink);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { capture->Stop(); });
  asio::steady_timer deadline(io);
  if (a.timeout_s > 0) {
    deadline.expires_after(std::chrono::seconds(a.timeout_s));
    deadline.async_wait([&](auto ec) {
      if (!ec) capture->Stop();
    });
  }
  Status result;
  asio::co_spawn(io, capture->Run(), [&](std::exception_ptr e, Status st) {
    if (e) std::rethrow_exception(e);
    result = st;
    signals.cancel();
    deadline.cancel();
  });
  io.run();
  if (result.code() == Code::kCancelled) return kExitOk;
  return Fail(result);
}

}  // namespace

void RegisterCaptureCommands(CLI::App& app, int* exit_code) {
  auto* init = app.add_subcommand(
      "init", "install DDL capture (an event trigger) into the primary database");
  auto dsn = std::make_shared<std::string>();
  init->add_option("--dsn", *dsn,
                   "libpq conninfo of the site's database (default: libpq's PG* environment "
                   "variables, service file and passfile; keep passwords out of it)");
  init->callback([dsn, exit_code] { *exit_code = RunInit(*dsn); });

  auto* tail = app.add_subcommand("tail", "print a database's decoded change stream");
  auto a = std::make_shared<TailArgs>();
  tail->add_option("--dsn", a->dsn,
                   "libpq conninfo of the database (default: libpq's PG* environment variables)");
  tail->add_option("--slot", a->slot, "replication slot (created if missing)")
      ->capture_default_str();
  tail->add_option("--publication", a->publication, "publication (created if missing)")
      ->capture_default_str();
  tail->add_option("--format", a->format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  tail->add_flag("--confirm", a->confirm,
                 "confirm each printed transaction to the slot (default: confirm nothing)");
  tail->add_flag("--temporary", a->temporary, "use a temporary slot, dropped on exit");
  tail->add_option("--limit", a->limit, "exit after this many transactions");
  tail->add_option("--timeout", a->timeout_s, "exit after this many seconds");
  tail->callback([a, exit_code] { *exit_code = RunTail(*a); });
}

}  // namespace geosync::ctl
