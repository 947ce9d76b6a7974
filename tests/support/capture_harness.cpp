// CaptureHarness: a Capture on its own io_context thread feeding RecordingSink.
#include "tests/support/capture_harness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>

#include <fmt/format.h>

#include "tests/support/wait.h"

namespace geosync {

void PrintTo(const Datum& d, std::ostream* os) {
  switch (d.kind) {
    case DatumKind::kNull:
      *os << "NULL";
      return;
    case DatumKind::kUnchangedToast:
      *os << "<unchanged toast>";
      return;
    case DatumKind::kText:
      *os << "'" << (d.value.size() > 200 ? d.value.substr(0, 200) + "..." : d.value) << "'";
      return;
    case DatumKind::kBinary:
      *os << "<" << d.value.size() << " binary bytes>";
      return;
  }
}

}  // namespace geosync

namespace geosync::testing {
namespace {

template <typename T>
std::vector<T> Filter(const std::vector<Event>& events) {
  std::vector<T> out;
  for (const auto& e : events) {
    if (const auto* t = std::get_if<T>(&e)) out.push_back(*t);
  }
  return out;
}

}  // namespace

std::vector<RowChange> RecordedTxn::Rows() const { return Filter<RowChange>(events); }
std::vector<MessageEvent> RecordedTxn::Messages() const { return Filter<MessageEvent>(events); }
std::vector<Relation> RecordedTxn::Relations() const { return Filter<Relation>(events); }
std::vector<TruncateEvent> RecordedTxn::Truncates() const { return Filter<TruncateEvent>(events); }

Status RecordingSink::OnEvent(const Event& event) {
  std::lock_guard lock(mu_);
  auto error = [&](const std::string& what) { errors_.push_back(what); };
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, BeginEvent>) {
          if (open_) error(fmt::format("Begin of xid {} inside xid {}", e.xid, open_->begin.xid));
          open_.emplace();
          open_->begin = e;
          described_.clear();
          open_rows_ = 0;
        } else if constexpr (std::is_same_v<T, CommitEvent>) {
          if (!open_) {
            error(fmt::format("Commit at {} outside a transaction", e.commit_lsn.ToString()));
            return;
          }
          open_->commit = e;
          txns_.push_back(std::move(*open_));
          open_.reset();
          open_rows_ = 0;
          if (options_.auto_durable && e.end_lsn.value() > durable_) durable_ = e.end_lsn.value();
        } else if constexpr (std::is_same_v<T, MessageEvent>) {
          if (!open_) {
            if (e.transactional) error("transactional message outside a transaction");
            loose_.push_back(e);
            return;
          }
          if (!e.transactional) error("non-transactional message inside a transaction");
          open_->events.push_back(e);
        } else {
          if (!open_) {
            error("change or relation outside a transaction");
            return;
          }
          if constexpr (std::is_same_v<T, Relation>) {
            described_.push_back(e.oid);
          } else if constexpr (std::is_same_v<T, RowChange>) {
            if (std::find(described_.begin(), described_.end(), e.rel_oid) == described_.end()) {
              error(fmt::format("row change for OID {} before its Relation", e.rel_oid));
            }
            ++open_->row_changes;
            ++open_rows_;
            if (options_.on_row) options_.on_row(e);
            if (!options_.store_rows) return;
          }
          open_->events.push_back(e);
        }
      },
      event);
  return Status::Ok();
}

Status RecordingSink::OnReconnect() {
  std::lock_guard lock(mu_);
  if (open_) dropped_.push_back(open_->row_changes);
  open_.reset();
  open_rows_ = 0;
  ++reconnects_;
  return Status::Ok();
}

size_t RecordingSink::CommitCount() const {
  std::lock_guard lock(mu_);
  return txns_.size();
}

std::vector<RecordedTxn> RecordingSink::Transactions() const {
  std::lock_guard lock(mu_);
  return txns_;
}

std::vector<MessageEvent> RecordingSink::LooseMessages() const {
  std::lock_guard lock(mu_);
  return loose_;
}

std::vector<uint64_t> RecordingSink::DroppedPartialRows() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

std::vector<std::string> RecordingSink::GrammarErrors() const {
  std::lock_guard lock(mu_);
  return errors_;
}

CaptureHarness::CaptureHarness(CaptureOptions options, RecordingSinkOptions sink_options)
    : options_(std::move(options)), sink_(std::move(sink_options)) {
  capture_ = std::make_unique<Capture>(io_.get_executor(), options_, sink_);
}

CaptureHarness::~CaptureHarness() { (void)Stop(); }

void CaptureHarness::Start() {
  boost::asio::co_spawn(io_, capture_->Run(), [this](std::exception_ptr e, Status st) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        st = Status::Io(fmt::format("capture threw: {}", ex.what()));
      }
    }
    std::lock_guard lock(mu_);
    result_ = st;
  });
  thread_ = std::thread([this] { io_.run(); });
}

Status CaptureHarness::Stop() {
  if (thread_.joinable()) {
    boost::asio::post(io_, [this] { capture_->Stop(); });
    thread_.join();
  }
  std::lock_guard lock(mu_);
  return result_.value_or(Status::Cancelled("capture never ran"));
}

std::optional<Status> CaptureHarness::Finished() const {
  std::lock_guard lock(mu_);
  return result_;
}

bool CaptureHarness::WaitForCommits(size_t n, std::chrono::milliseconds deadline,
                                    std::source_location where) {
  Status st = Poll(
      [&] {
        if (auto r = Finished()) throw std::runtime_error("capture ended: " + r->ToString());
        return sink_.CommitCount() >= n;
      },
      deadline, fmt::format("{} transactions at the capture sink", n));
  if (!st.ok()) {
    ADD_FAILURE_AT(where.file_name(), static_cast<int>(where.line()))
        << st.message() << "; have " << sink_.CommitCount();
  }
  return st.ok();
}

bool CaptureHarness::WaitForMarker(const std::string& prefix, const std::string& content,
                                   std::chrono::milliseconds deadline, std::source_location where) {
  size_t checked = 0;
  Status st = Poll(
      [&] {
        if (auto r = Finished()) throw std::runtime_error("capture ended: " + r->ToString());
        if (sink_.CommitCount() == checked) return false;
        auto txns = sink_.Transactions();
        for (; checked < txns.size(); ++checked) {
          for (const auto& m : txns[checked].Messages()) {
            if (m.prefix == prefix && m.content == content) return true;
          }
        }
        return false;
      },
      deadline,
      fmt::format("a transaction with message {}:{} at the capture sink", prefix, content));
  if (!st.ok()) ADD_FAILURE_AT(where.file_name(), static_cast<int>(where.line())) << st.message();
  return st.ok();
}

std::string ConfirmedFlushQuery(const std::string& slot) {
  return fmt::format("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
                     slot);
}

void CaptureClusterTest::SetUp() {
  PgClusterOptions o;
  o.from_template = true;  // capture tests do not look at system identifiers
  pg_ = &NewCluster("primary", o);
}

void CaptureClusterTest::TearDown() {
  for (auto& c : captures_) {
    Status st = c->Stop();
    if (st.code() != Code::kCancelled) {
      ADD_FAILURE() << "capture of slot " << c->options().slot
                    << " ended with an error: " << st.ToString();
    }
    EXPECT_THAT(c->sink().GrammarErrors(), ::testing::IsEmpty())
        << "the stream of slot " << c->options().slot << " kept Begin..Commit grammar";
  }
  captures_.clear();
  PgClusterTest::TearDown();
}

CaptureOptions CaptureClusterTest::Options(const std::string& slot) const {
  CaptureOptions o;
  o.conninfo = pg_->ConnInfo();
  o.slot = slot;
  o.status_interval = std::chrono::milliseconds(200);
  o.max_backoff = std::chrono::milliseconds(500);
  return o;
}

CaptureHarness& CaptureClusterTest::StartCapture(CaptureOptions options,
                                                 RecordingSinkOptions sink_options) {
  const std::string slot = options.slot;
  captures_.push_back(
      std::make_unique<CaptureHarness>(std::move(options), std::move(sink_options)));
  CaptureHarness& c = *captures_.back();
  c.Start();
  Status st = Poll(
      [&] {
        if (auto r = c.Finished()) throw std::runtime_error("capture ended: " + r->ToString());
        return pg_->QueryValue(fmt::format(
                   "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active",
                   slot)) == "1";
      },
      std::chrono::seconds(30), fmt::format("capture streams slot {}", slot));
  if (!st.ok()) throw std::runtime_error(st.ToString());
  return c;
}

std::vector<RecordedTxn> CaptureClusterTest::Collect(CaptureHarness& capture,
                                                     std::source_location where) {
  const std::string content = std::to_string(++markers_);
  pg_->Exec(fmt::format("SELECT pg_logical_emit_message(true, 'test.marker', '{}')", content));
  if (!capture.WaitForMarker("test.marker", content, std::chrono::seconds(30), where)) return {};
  auto txns = capture.sink().Transactions();
  size_t& from = collected_[&capture];
  std::vector<RecordedTxn> out;
  for (size_t i = from; i < txns.size(); ++i) {
    auto m = txns[i].Messages();
    bool is_marker = txns[i].row_changes == 0 && m.size() == 1 && m[0].prefix == "test.marker";
    if (!is_marker) out.push_back(txns[i]);
  }
  from = txns.size();
  return out;
}

std::string CaptureClusterTest::ExecError(const std::string& sql) {
  PgConn conn = pg_->Connect();
  auto r = conn.Exec(sql);
  return r.ok() ? "" : r.status().sqlstate();
}

}  // namespace geosync::testing
