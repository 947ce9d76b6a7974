// SpoolReader: streams complete, fsynced units from the spool's segments,
// following the writer across rotations and noticing released segments.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "agent/spool/spool.h"
#include "agent/spool/spool_internal.h"

namespace geosync {

using spool_internal::Errno;
using spool_internal::SegmentInfo;
using spool_internal::Shared;

SpoolReader::SpoolReader(std::shared_ptr<Shared> shared, Position after, uint64_t next_id,
                         uint64_t start_offset)
    : shared_(std::move(shared)), after_(after), next_id_(next_id), start_offset_(start_offset) {}

SpoolReader::~SpoolReader() = default;

Status SpoolReader::OpenNext(bool* opened) {
  *opened = false;
  std::string name;
  {
    std::lock_guard lock(shared_->mu);
    const SegmentInfo* seg = shared_->Find(next_id_);
    if (seg == nullptr) {
      bool released = !shared_->segments.empty() && shared_->segments.back().id > next_id_;
      if (!released) return Status::Ok();  // not created yet
      return Status::NotFound(fmt::format(
          "spool: the segment this reader needs next was released (units up to {}); the site "
          "needs a re-seed",
          shared_->released.ToString()));
    }
    // An active segment without durable data may still be abandoned
    // (AbandonIncompleteUnit): wait until it holds a complete unit.
    if (!seg->sealed && seg->durable_end == 0) return Status::Ok();
    name = seg->name;
  }
  std::string path = shared_->Path(name);
  fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd_.valid()) {
    if (errno == ENOENT) {
      return Status::NotFound(fmt::format(
          "spool: segment {} was released under the reader; the site needs a re-seed", name));
    }
    return Errno("opening spool segment", path);
  }
  reader_ = std::make_unique<SegmentReader>(fd_.get(), name, start_offset_);
  start_offset_ = 0;
  *opened = true;
  return Status::Ok();
}

// How far the open segment may be read, and whether it will grow further.
Status SpoolReader::Limit(uint64_t* limit, bool* sealed) {
  {
    std::lock_guard lock(shared_->mu);
    if (const SegmentInfo* seg = shared_->Find(next_id_)) {
      *limit = seg->durable_end;
      *sealed = seg->sealed;
      return Status::Ok();
    }
  }
  // Released while open: it was sealed, so the whole file is durable.
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return Errno("reading the size of", reader_->name());
  *limit = static_cast<uint64_t>(st.st_size);
  *sealed = true;
  return Status::Ok();
}

Result<std::optional<SpoolRecord>> SpoolReader::Next() {
  for (;;) {
    if (!fd_.valid()) {
      bool opened = false;
      GEOSYNC_RETURN_IF_ERROR(OpenNext(&opened));
      if (!opened) return std::optional<SpoolRecord>();
    }
    uint64_t limit = 0;
    bool sealed = false;
    GEOSYNC_RETURN_IF_ERROR(Limit(&limit, &sealed));
    SpoolRecord rec;
    std::string problem;
    const uint64_t offset = reader_->offset();
    GEOSYNC_ASSIGN_OR_RETURN(auto step, reader_->Next(limit, &rec, &problem));
    switch (step) {
      case SegmentReader::Step::kRecord:
        if (rec.position() <= after_) continue;
        return std::optional<SpoolRecord>(std::move(rec));
      case SegmentReader::Step::kEnd:
        if (!sealed) return std::optional<SpoolRecord>();
        reader_.reset();
        fd_.Reset();
        ++next_id_;
        continue;
      case SegmentReader::Step::kIncomplete:
      case SegmentReader::Step::kBad:
        return Status::Corruption(
            fmt::format("spool segment {} at offset {}: {}", reader_->name(), offset, problem));
    }
  }
}

}  // namespace geosync
