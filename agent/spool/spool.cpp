// The durable spool: the writer's append/sync/rotate path, retention, and
// where readers start (spool_reader.cpp). Recovery of a torn tail at Open is
// in spool_recovery.cpp.
#include "agent/spool/spool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "agent/spool/spool_internal.h"

namespace geosync {

Status spool_internal::Errno(std::string_view what, const std::string& path) {
  return Status::Io(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

Status spool_internal::FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Errno("opening spool directory", dir);
  if (::fsync(fd.get()) != 0) return Errno("fsyncing spool directory", dir);
  return Status::Ok();
}

using spool_internal::Errno;
using spool_internal::FsyncDir;
using spool_internal::Recover;
using spool_internal::SegmentInfo;
using spool_internal::Shared;

namespace {

constexpr size_t kWriteBufferBytes = 1 << 20;
constexpr std::string_view kLockFile = "LOCK";
// Text file holding released(): "geosync-spool-released 1\n<epoch>@<X/Y>\n".
constexpr std::string_view kReleasedFile = "released";
constexpr std::string_view kReleasedHeader = "geosync-spool-released 1";

Status WriteAll(int fd, std::span<const uint8_t> bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writing spool segment", path);
    }
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<Position> ReadReleased(const std::string& dir) {
  std::string path = fmt::format("{}/{}", dir, kReleasedFile);
  std::ifstream in(path);
  if (!in) return Position{};
  std::string header;
  std::string pos_text;
  std::getline(in, header);
  std::getline(in, pos_text);
  if (header != kReleasedHeader) {
    return Status::Corruption(fmt::format("{}: unknown header \"{}\"", path, header));
  }
  auto pos = Position::Parse(pos_text);
  if (!pos.ok()) return pos.status().WithContext(path);
  return pos.value();
}

// Temp file, fsync, rename, fsync the directory: a crash leaves the old or the
// new value, never a mix.
Status WriteReleased(const std::string& dir, Position released) {
  std::string path = fmt::format("{}/{}", dir, kReleasedFile);
  std::string tmp = path + ".tmp";
  std::string text = fmt::format("{}\n{}\n", kReleasedHeader, released.ToString());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return Errno("creating", tmp);
  GEOSYNC_RETURN_IF_ERROR(WriteAll(
      fd.get(), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), tmp));
  if (::fsync(fd.get()) != 0) return Errno("fsyncing", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("renaming", tmp);
  return FsyncDir(dir);
}

}  // namespace

// ---------------------------------------------------------------------------
// Spool: opening and the writer.

Spool::Spool(SpoolOptions options, std::shared_ptr<Shared> shared)
    : options_(std::move(options)), shared_(std::move(shared)) {}

Spool::~Spool() = default;

Result<std::unique_ptr<Spool>> Spool::Open(SpoolOptions options) {
  if (options.dir.empty()) return Status::InvalidArgument("spool: no directory given");
  if (options.segment_bytes == 0) return Status::InvalidArgument("spool: segment_bytes is 0");
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return Status::Io(fmt::format("creating spool directory {}: {}", options.dir, ec.message()));
  }
  std::string lock_path = fmt::format("{}/{}", options.dir, kLockFile);
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.valid()) return Errno("opening", lock_path);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return Status::Io(fmt::format("spool directory {} is in use by another spool: {}", options.dir,
                                  std::strerror(errno)));
  }
  auto shared = std::make_shared<Shared>();
  shared->dir = options.dir;
  GEOSYNC_ASSIGN_OR_RETURN(shared->released, ReadReleased(options.dir));
  GEOSYNC_RETURN_IF_ERROR(Recover(*shared).WithContext("opening spool"));

  std::unique_ptr<Spool> spool(new Spool(std::move(options), shared));
  spool->lock_fd_ = std::move(lock);
  spool->last_unit_ = spool->last_appended_ = shared->durable;
  // The last segment is appended to, unless it is sealed: when a torn last
  // segment was removed, the one before it stays sealed (readers that
  // finished it never look at it again) and the next append starts a new one.
  if (!shared->segments.empty() && !shared->segments.back().sealed) {
    const SegmentInfo& active = shared->segments.back();
    std::string path = shared->Path(active.name);
    spool->fd_ = UniqueFd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!spool->fd_.valid()) return Errno("opening spool segment", path);
    spool->active_first_ = active.first;
    spool->active_size_ = spool->unit_end_ = active.bytes;
  }
  return spool;
}

Status Spool::CheckAppend(Position pos, uint8_t flags, size_t payload_size) const {
  if ((flags & ~kStandalone) != 0) {
    return Status::InvalidArgument(fmt::format("spool: unknown record flags 0x{:02x}", flags));
  }
  if (payload_size > kMaxRecordPayload) {
    return Status::InvalidArgument(fmt::format("spool: record payload of {} bytes is over {}",
                                               payload_size, kMaxRecordPayload));
  }
  if (pos.epoch < last_appended_.epoch) {
    return Status::Fenced(fmt::format("spool: record at {} is from an older epoch than {}",
                                      pos.ToString(), last_appended_.ToString()));
  }
  if (pos < last_appended_) {
    return Status::InvalidArgument(fmt::format("spool: lsn goes backwards: record at {} after {}",
                                               pos.ToString(), last_appended_.ToString()));
  }
  if ((flags & kFirstInUnit) != 0 && unit_open_) {
    return Status::InvalidArgument(
        fmt::format("spool: record at {} starts a unit while the unit at {} has no last record",
                    pos.ToString(), unit_pos_.ToString()));
  }
  if ((flags & kFirstInUnit) == 0 && !unit_open_) {
    return Status::InvalidArgument(
        fmt::format("spool: record at {} continues a unit but none is open", pos.ToString()));
  }
  if ((flags & kFirstInUnit) == 0 && pos != unit_pos_) {
    return Status::InvalidArgument(fmt::format("spool: record at {} inside the unit at {}",
                                               pos.ToString(), unit_pos_.ToString()));
  }
  return Status::Ok();
}

Status Spool::Append(uint64_t epoch, Lsn lsn, uint8_t flags, std::span<const uint8_t> payload) {
  if (!failed_.ok()) return failed_;
  const Position pos{epoch, lsn};
  GEOSYNC_RETURN_IF_ERROR(CheckAppend(pos, flags, payload.size()));
  if ((flags & kFirstInUnit) != 0) {
    if (options_.max_bytes != 0 && size_bytes() >= options_.max_bytes) {
      return Status::Io(fmt::format(
          "spool full: {} bytes in {}, cap {} bytes (spool.max_mb); waiting until retention "
          "frees segments (on a source once every site holds them, on a replica "
          "once they are applied)",
          size_bytes(), shared_->dir, options_.max_bytes));
    }
    // Names must stay unique and increasing, so a segment full of units at
    // one position grows until the position moves on.
    if (fd_.valid() && active_size_ >= options_.segment_bytes && active_first_ < pos) {
      GEOSYNC_RETURN_IF_ERROR(Rotate());
    }
    if (!fd_.valid()) GEOSYNC_RETURN_IF_ERROR(CreateSegment(pos));
  }
  auto header = EncodeRecordHeader(epoch, lsn, flags, payload);
  GEOSYNC_RETURN_IF_ERROR(Write(header));
  GEOSYNC_RETURN_IF_ERROR(Write(payload));
  const uint64_t record_bytes = kRecordHeaderSize + payload.size();
  active_size_ += record_bytes;
  last_appended_ = unit_pos_ = pos;
  unit_open_ = (flags & kLastInUnit) == 0;
  if (!unit_open_) {
    unit_end_ = active_size_;
    last_unit_ = pos;
  }
  std::lock_guard lock(shared_->mu);
  shared_->segments.back().bytes += record_bytes;
  shared_->total_bytes += record_bytes;
  shared_->last_appended = pos;
  return Status::Ok();
}

Status Spool::Sync() {
  if (!failed_.ok()) return failed_;
  if (!fd_.valid()) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(FlushBuffer());
  if (::fdatasync(fd_.get()) != 0) {
    return Fail(Errno("fdatasync of spool segment", SegmentFileName(active_first_)));
  }
  if (dir_dirty_) {
    GEOSYNC_RETURN_IF_ERROR(Fail(FsyncDir(shared_->dir)));
    dir_dirty_ = false;
  }
  std::lock_guard lock(shared_->mu);
  SegmentInfo& active = shared_->segments.back();
  active.durable_end = unit_end_;
  if (unit_end_ > 0) active.last = last_unit_;
  shared_->durable = last_unit_;
  return Status::Ok();
}

Status Spool::AbandonIncompleteUnit() {
  if (!failed_.ok()) return failed_;
  if (!unit_open_) return Status::Ok();
  const uint64_t dropped = active_size_ - unit_end_;
  const uint64_t written = active_size_ - buf_.size();
  const std::string path = shared_->Path(SegmentFileName(active_first_));
  if (unit_end_ == 0) {
    // The unit opened this segment, whose name is the unit's position: remove
    // it, so that a unit at another position cannot land under that name.
    fd_.Reset();
    if (::unlink(path.c_str()) != 0) return Fail(Errno("removing", path));
    dir_dirty_ = true;
    buf_.clear();
  } else if (written > unit_end_) {
    if (::ftruncate(fd_.get(), static_cast<off_t>(unit_end_)) != 0) {
      return Fail(Errno("truncating", path));
    }
    buf_.clear();
  } else {
    buf_.resize(buf_.size() - dropped);
  }
  active_size_ = unit_end_;
  unit_open_ = false;
  last_appended_ = last_unit_;
  std::lock_guard lock(shared_->mu);
  shared_->total_bytes -= dropped;
  shared_->last_appended = last_unit_;
  if (unit_end_ == 0) {
    // No reader opened it (they wait for durable data), so its id is reused.
    shared_->segments.pop_back();
    --shared_->next_id;
  } else {
    shared_->segments.back().bytes -= dropped;
  }
  return Status::Ok();
}

Status Spool::ReopenWriter() {
  if (failed_.ok()) return Status::Ok();
  fd_.Reset();
  buf_.clear();
  unit_open_ = false;
  std::lock_guard lock(shared_->mu);
  const Position durable = shared_->durable;
  if (!shared_->segments.empty() && !shared_->segments.back().sealed) {
    SegmentInfo& active = shared_->segments.back();
    const std::string path = shared_->Path(active.name);
    const uint64_t keep = active.durable_end;
    if (keep == 0) {
      // Nothing of it was durable, so no reader opened it: remove it.
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("removing", path);
      shared_->total_bytes -= active.bytes;
      shared_->segments.pop_back();
      --shared_->next_id;
    } else {
      UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
      if (!fd.valid()) return Errno("reopening spool segment", path);
      if (::ftruncate(fd.get(), static_cast<off_t>(keep)) != 0) return Errno("truncating", path);
      if (::fsync(fd.get()) != 0) return Errno("fsyncing", path);
      shared_->total_bytes -= active.bytes - keep;
      active.bytes = keep;
      fd_ = std::move(fd);
      active_first_ = active.first;
      active_size_ = unit_end_ = keep;
    }
  }
  GEOSYNC_RETURN_IF_ERROR(FsyncDir(shared_->dir));
  dir_dirty_ = false;
  last_appended_ = last_unit_ = durable;
  shared_->last_appended = durable;
  spdlog::warn("spool: reopened after \"{}\"; appending again after {}", failed_.ToString(),
               durable.ToString());
  failed_ = Status::Ok();
  {
    std::lock_guard lock(error_mu_);
    write_error_.clear();
  }
  return Status::Ok();
}

std::string Spool::write_error() const {
  std::lock_guard lock(error_mu_);
  return write_error_;
}

// Called at a unit boundary: makes the active segment durable and seals it.
Status Spool::Rotate() {
  GEOSYNC_RETURN_IF_ERROR(Sync());
  fd_.Reset();
  std::lock_guard lock(shared_->mu);
  shared_->segments.back().sealed = true;
  return Status::Ok();
}

Status Spool::CreateSegment(Position first) {
  std::string name = SegmentFileName(first);
  std::string path = shared_->Path(name);
  fd_ = UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644));
  if (!fd_.valid()) return Fail(Errno("creating spool segment", path));
  dir_dirty_ = true;
  active_first_ = first;
  active_size_ = unit_end_ = 0;
  SegmentInfo seg;
  seg.name = std::move(name);
  seg.first = first;
  std::lock_guard lock(shared_->mu);
  seg.id = shared_->next_id++;
  shared_->segments.push_back(std::move(seg));
  return Status::Ok();
}

Status Spool::Write(std::span<const uint8_t> bytes) {
  if (buf_.size() + bytes.size() <= kWriteBufferBytes) {
    buf_.insert(buf_.end(), bytes.begin(), bytes.end());
    return buf_.size() == kWriteBufferBytes ? FlushBuffer() : Status::Ok();
  }
  GEOSYNC_RETURN_IF_ERROR(FlushBuffer());
  if (bytes.size() < kWriteBufferBytes) {
    buf_.assign(bytes.begin(), bytes.end());
    return Status::Ok();
  }
  return Fail(WriteAll(fd_.get(), bytes, shared_->Path(SegmentFileName(active_first_))));
}

Status Spool::FlushBuffer() {
  if (buf_.empty()) return Status::Ok();
  Status st = WriteAll(fd_.get(), buf_, shared_->Path(SegmentFileName(active_first_)));
  buf_.clear();
  return Fail(std::move(st));
}

// Once a write or fsync has failed, what the kernel holds for the file is
// unknown (PostgreSQL's fsync lesson): refuse further writes until reopened.
Status Spool::Fail(Status status) {
  if (!status.ok() && failed_.ok()) {
    failed_ = status.WithContext("spool failed, reopen it");
    const bool full = status.message().find("No space left") != std::string::npos;
    std::lock_guard lock(error_mu_);
    write_error_ =
        fmt::format("{}: {}", full ? "spool disk full" : "spool write failed", status.ToString());
  }
  return status;
}

Position Spool::durable() const {
  std::lock_guard lock(shared_->mu);
  return shared_->durable;
}

Position Spool::last_appended() const {
  std::lock_guard lock(shared_->mu);
  return shared_->last_appended;
}

uint64_t Spool::size_bytes() const {
  std::lock_guard lock(shared_->mu);
  return shared_->total_bytes;
}

Position Spool::oldest() const {
  std::lock_guard lock(shared_->mu);
  return shared_->segments.empty() ? Position{} : shared_->segments.front().first;
}

Position Spool::released() const {
  std::lock_guard lock(shared_->mu);
  return shared_->released;
}

// ---------------------------------------------------------------------------
// Retention.

Status Spool::ReleaseUpTo(Position upto, uint64_t keep_bytes) {
  std::lock_guard release_lock(release_mu_);
  std::vector<std::string> doomed;
  Position new_released;
  {
    std::lock_guard lock(shared_->mu);
    new_released = shared_->released;
    const auto& segs = shared_->segments;
    uint64_t left = shared_->total_bytes;
    for (size_t i = 0; i + 1 < segs.size() && segs[i].sealed && segs[i].last <= upto &&
                       (keep_bytes == 0 || left > keep_bytes);
         ++i) {
      doomed.push_back(segs[i].name);
      new_released = std::max(new_released, segs[i].last);
      left -= segs[i].bytes;
    }
  }
  if (doomed.empty()) return Status::Ok();
  // Record the floor before deleting: after a crash in between, readers are
  // refused a little too early rather than served a gap.
  GEOSYNC_RETURN_IF_ERROR(WriteReleased(shared_->dir, new_released));
  {
    std::lock_guard lock(shared_->mu);
    auto& segs = shared_->segments;
    for (size_t i = 0; i < doomed.size(); ++i) shared_->total_bytes -= segs[i].bytes;
    segs.erase(segs.begin(), segs.begin() + static_cast<std::ptrdiff_t>(doomed.size()));
    shared_->released = new_released;
  }
  for (const auto& name : doomed) {
    std::string path = shared_->Path(name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("removing", path);
  }
  spdlog::info("spool: released {} segment{} up to {}", doomed.size(),
               doomed.size() == 1 ? "" : "s", new_released.ToString());
  return FsyncDir(shared_->dir);
}

uint64_t Spool::ReleasableBytes(Position upto) const {
  std::lock_guard lock(shared_->mu);
  const auto& segs = shared_->segments;
  uint64_t bytes = 0;
  for (size_t i = 0; i + 1 < segs.size() && segs[i].sealed && segs[i].last <= upto; ++i) {
    bytes += segs[i].bytes;
  }
  return bytes;
}

// Segments first, then the floor: a crash in between leaves an empty spool at
// the old floor, and the seed that called this starts again anyway.
Status Spool::ResetTo(Position floor) {
  if (!failed_.ok()) return failed_;
  std::lock_guard release_lock(release_mu_);
  buf_.clear();
  fd_.Reset();
  std::vector<std::string> doomed;
  {
    std::lock_guard lock(shared_->mu);
    for (const auto& seg : shared_->segments) doomed.push_back(seg.name);
    shared_->segments.clear();
    shared_->total_bytes = 0;
    shared_->durable = shared_->released = shared_->last_appended = floor;
  }
  for (const auto& name : doomed) {
    std::string path = shared_->Path(name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Fail(Errno("removing", path));
  }
  GEOSYNC_RETURN_IF_ERROR(Fail(FsyncDir(shared_->dir)));
  GEOSYNC_RETURN_IF_ERROR(Fail(WriteReleased(shared_->dir, floor)));
  active_first_ = Position{};
  active_size_ = unit_end_ = 0;
  last_unit_ = last_appended_ = unit_pos_ = floor;
  unit_open_ = false;
  dir_dirty_ = false;
  spdlog::info("spool: reset to {} ({} segment{} removed)", floor.ToString(), doomed.size(),
               doomed.size() == 1 ? "" : "s");
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Readers.

Result<std::unique_ptr<SpoolReader>> Spool::ReadFrom(Position after) {
  std::lock_guard lock(shared_->mu);
  if (after < shared_->released) {
    Position oldest = shared_->segments.empty() ? Position{} : shared_->segments.front().first;
    return Status::NotFound(fmt::format(
        "spool: position {} is no longer retained: units up to {} were released (oldest "
        "retained {}); the site needs a re-seed",
        after.ToString(), shared_->released.ToString(), oldest.ToString()));
  }
  uint64_t id = shared_->next_id;
  uint64_t offset = 0;
  auto it = std::find_if(shared_->segments.begin(), shared_->segments.end(),
                         [&](const SegmentInfo& s) { return s.durable_end > 0 && after < s.last; });
  if (it != shared_->segments.end()) {
    id = it->id;
  } else if (!shared_->segments.empty()) {
    // Everything durable is at or before `after`: wait at the durable end.
    id = shared_->segments.back().id;
    offset = shared_->segments.back().durable_end;
  }
  return std::unique_ptr<SpoolReader>(new SpoolReader(shared_, after, id, offset));
}

SpoolOptions SpoolOptions::FromConfig(const Config& config) {
  SpoolOptions o;
  o.dir = config.spool.dir;
  o.segment_bytes = config.spool.segment_bytes;
  o.max_bytes = config.spool.max_bytes;
  return o;
}

}  // namespace geosync
