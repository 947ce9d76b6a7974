// Recovery of the spool at Open: every segment is scanned; a torn tail of
// the last one (a crash mid-write) is cut back to its last complete unit,
// and anything else that does not check out is Corruption naming the file
// and offset (docs/spool.md, "Recovery at Open").
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "agent/spool/segment.h"
#include "agent/spool/spool_internal.h"

namespace geosync {

using spool_internal::Errno;
using spool_internal::FsyncDir;
using spool_internal::SegmentInfo;
using spool_internal::Shared;

namespace {

// Segment names in spool order. A *.seg file with another name is Corruption:
// guessing where it belongs could lose or duplicate data.
Result<std::vector<std::string>> ListSegments(const std::string& dir) {
  std::vector<std::pair<Position, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.ends_with(".seg")) continue;
    auto pos = ParseSegmentFileName(name);
    if (!pos) {
      return Status::Corruption(fmt::format("unexpected file {} in spool directory {}", name, dir));
    }
    found.emplace_back(*pos, name);
  }
  if (ec) return Status::Io(fmt::format("listing spool directory {}: {}", dir, ec.message()));
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  for (auto& [pos, name] : found) names.push_back(std::move(name));
  return names;
}

// What one pass over a segment found.
struct ScanResult {
  uint64_t file_size = 0;
  uint64_t valid_end = 0;     // end of the last complete unit
  Position last_unit;         // Position{} if no complete unit
  int open_unit_records = 0;  // records after valid_end that parsed
  std::string defect;         // why parsing stopped before file_size, or empty
  uint64_t defect_offset = 0;
  // A complete record with a good checksum found after the defect: the file
  // was not torn at the defect, it is corrupt there.
  std::optional<uint64_t> valid_after_defect;
};

// Looks for a complete record with a good checksum anywhere after `from`
// (where parsing stopped): a torn tail has none, since nothing was written
// after the tear. Reads with SegmentReader's bounded buffer, one candidate
// (the record magic) at a time.
Result<std::optional<uint64_t>> FindRecordAfter(int fd, const std::string& name, uint64_t from,
                                                uint64_t file_size) {
  std::vector<uint8_t> buf(1 << 20);
  SpoolRecord rec;
  for (uint64_t base = from + 1; base + kRecordHeaderSize <= file_size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), file_size - base));
    ssize_t got = ::pread(fd, buf.data(), want, static_cast<off_t>(base));
    if (got < 0) return Errno("reading spool segment", name);
    if (got == 0) break;
    for (size_t i = 0; i + kRecordMagic.size() <= static_cast<size_t>(got); ++i) {
      if (!std::equal(kRecordMagic.begin(), kRecordMagic.end(), buf.begin() + i)) continue;
      SegmentReader candidate(fd, name, base + i);
      GEOSYNC_ASSIGN_OR_RETURN(auto step, candidate.Next(file_size, &rec));
      if (step == SegmentReader::Step::kRecord) return std::optional<uint64_t>(base + i);
    }
    // The magic may straddle two reads: the next read starts 3 bytes back.
    base += static_cast<uint64_t>(got) - (kRecordMagic.size() - 1);
  }
  return std::optional<uint64_t>();
}

// Checks the unit structure and ordering of one record; a violation is
// Corruption wherever it is, because its checksum says it was written so.
Status CheckSequence(const std::string& name, uint64_t offset, const SpoolRecord& rec,
                     Position prev, bool unit_open, Position unit_pos) {
  std::string bad;
  if (rec.position() < prev) {
    bad = fmt::format("position {} is before the previous record's {}", rec.position().ToString(),
                      prev.ToString());
  } else if (rec.first_in_unit() && unit_open) {
    bad = fmt::format("a unit starts while the unit at {} is open", unit_pos.ToString());
  } else if (!rec.first_in_unit() && !unit_open) {
    bad = "a record continues a unit but none is open";
  } else if (!rec.first_in_unit() && rec.position() != unit_pos) {
    bad = fmt::format("record at {} inside the unit at {}", rec.position().ToString(),
                      unit_pos.ToString());
  }
  if (bad.empty()) return Status::Ok();
  return Status::Corruption(fmt::format("spool segment {} at offset {}: {}", name, offset, bad));
}

Result<ScanResult> ScanSegment(const Shared& shared, const std::string& name, Position named,
                               Position prev) {
  std::string path = shared.Path(name);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno("opening spool segment", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno("reading the size of", path);
  ScanResult scan;
  scan.file_size = static_cast<uint64_t>(st.st_size);
  SegmentReader reader(fd.get(), name, 0);
  SpoolRecord rec;
  bool unit_open = false;
  Position unit_pos;
  for (;;) {
    uint64_t offset = reader.offset();
    GEOSYNC_ASSIGN_OR_RETURN(auto step, reader.Next(scan.file_size, &rec, &scan.defect));
    if (step == SegmentReader::Step::kEnd) break;
    if (step != SegmentReader::Step::kRecord) {
      scan.defect_offset = offset;
      GEOSYNC_ASSIGN_OR_RETURN(scan.valid_after_defect,
                               FindRecordAfter(fd.get(), name, offset, scan.file_size));
      break;
    }
    if (offset == 0 && rec.position() != named) {
      return Status::Corruption(
          fmt::format("spool segment {}: first record is at {}", name, rec.position().ToString()));
    }
    GEOSYNC_RETURN_IF_ERROR(CheckSequence(name, offset, rec, prev, unit_open, unit_pos));
    prev = rec.position();
    unit_pos = rec.position();
    unit_open = !rec.last_in_unit();
    ++scan.open_unit_records;
    if (rec.last_in_unit()) {
      scan.valid_end = reader.offset();
      scan.last_unit = rec.position();
      scan.open_unit_records = 0;
    }
  }
  return scan;
}

std::string TornTailReason(const ScanResult& scan) {
  if (scan.file_size == 0) return "empty segment";
  std::string reason;
  if (scan.open_unit_records > 0) {
    reason = fmt::format("incomplete unit of {} record{}", scan.open_unit_records,
                         scan.open_unit_records == 1 ? "" : "s");
  }
  if (!scan.defect.empty()) {
    if (!reason.empty()) reason += ", then ";
    reason += scan.defect;
    if (scan.defect_offset != scan.valid_end) {
      reason += fmt::format(" at offset {}", scan.defect_offset);
    }
  }
  return reason;
}

// Cuts the last segment back to its last complete unit, or removes it when
// nothing complete is left. Returns whether the segment is still there.
Result<bool> CutTornTail(const Shared& shared, const std::string& name, const ScanResult& scan) {
  std::string path = shared.Path(name);
  spdlog::warn("spool: truncated torn tail of segment {} at offset {}: {} bytes, {}", name,
               scan.valid_end, scan.file_size - scan.valid_end, TornTailReason(scan));
  if (scan.valid_end == 0) {
    if (::unlink(path.c_str()) != 0) return Errno("removing", path);
    GEOSYNC_RETURN_IF_ERROR(FsyncDir(shared.dir));
    return false;
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno("opening spool segment", path);
  if (::ftruncate(fd.get(), static_cast<off_t>(scan.valid_end)) != 0) {
    return Errno("truncating", path);
  }
  if (::fsync(fd.get()) != 0) return Errno("fsyncing", path);
  return true;
}

}  // namespace

Status spool_internal::Recover(Shared& shared) {
  GEOSYNC_ASSIGN_OR_RETURN(std::vector<std::string> names, ListSegments(shared.dir));
  Position prev;
  for (size_t i = 0; i < names.size(); ++i) {
    const bool is_last = i + 1 == names.size();
    Position named = *ParseSegmentFileName(names[i]);
    GEOSYNC_ASSIGN_OR_RETURN(ScanResult scan, ScanSegment(shared, names[i], named, prev));
    if (scan.valid_after_defect) {
      // Not a torn tail: the records after the bad one were written, synced
      // and perhaps confirmed to PostgreSQL, which will not send them again.
      // Cutting them would lose them silently.
      return Status::Corruption(fmt::format(
          "spool segment {} at offset {}: {}, followed by valid records (the next at offset "
          "{}): the spool is corrupt, not torn; nothing was cut. See docs/spool.md, "
          "\"Corruption\", for how to recover",
          shared.Path(names[i]), scan.defect_offset, scan.defect, *scan.valid_after_defect));
    }
    if (scan.valid_end < scan.file_size || (is_last && scan.valid_end == 0)) {
      if (!is_last) {
        uint64_t at = scan.defect.empty() ? scan.valid_end : scan.defect_offset;
        std::string what = scan.defect.empty() ? "incomplete unit at the end" : scan.defect;
        return Status::Corruption(
            fmt::format("spool segment {} at offset {}: {}", names[i], at, what));
      }
      GEOSYNC_ASSIGN_OR_RETURN(bool kept, CutTornTail(shared, names[i], scan));
      if (!kept) break;
    }
    if (scan.valid_end == 0) {
      return Status::Corruption(fmt::format("spool segment {} is empty", names[i]));
    }
    SegmentInfo seg;
    seg.id = shared.next_id++;
    seg.name = names[i];
    seg.first = named;
    seg.last = scan.last_unit;
    seg.bytes = seg.durable_end = scan.valid_end;
    seg.sealed = !is_last;
    shared.total_bytes += seg.bytes;
    shared.segments.push_back(std::move(seg));
    prev = scan.last_unit;
  }
  shared.durable = shared.segments.empty() ? shared.released : shared.segments.back().last;
  shared.last_appended = shared.durable;
  return Status::Ok();
}

}  // namespace geosync
