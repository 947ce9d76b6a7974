// StreamSpill: one append-only file per streamed top-level transaction.
#include "agent/source/stream_spill.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/byte_order.h"
#include "common/checksum.h"

namespace geosync {
namespace {

constexpr char kMagic[8] = {'G', 'S', 'S', 'P', 'I', 'L', 'L', '1'};
constexpr size_t kWriteBuffer = 256 * 1024;
constexpr size_t kReadBuffer = 1024 * 1024;
constexpr std::string_view kSuffix = ".spill";

Status ErrnoStatus(std::string_view what, const std::string& path) {
  return Status::Io(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

// Spill records are big-endian.
void PutU32(std::vector<uint8_t>* out, uint32_t v) { AppendBe(out, v); }
uint32_t GetU32(const uint8_t* p) { return LoadBe<uint32_t>(p); }

Status WriteAll(int fd, const uint8_t* data, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("writing", path);
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

}  // namespace

SpillReader::SpillReader(int fd, std::string path, uint64_t size)
    : fd_(fd), path_(std::move(path)), size_(size) {}

Result<bool> SpillReader::Next(std::vector<uint8_t>* record) {
  if (offset_ == 0) {
    GEOSYNC_RETURN_IF_ERROR(Read(sizeof(kMagic), record, "header"));
    if (!std::equal(record->begin(), record->end(), std::begin(kMagic))) {
      return Status::Corruption(fmt::format("spill file {}: bad magic at offset 0", path_));
    }
  }
  if (offset_ >= size_) return false;
  record_offset_ = offset_;
  GEOSYNC_RETURN_IF_ERROR(Read(8, record, "record header"));
  const uint32_t len = GetU32(record->data());
  const uint32_t crc = GetU32(record->data() + 4);
  if (len > StreamSpill::kMaxRecord) {
    return Status::Corruption(
        fmt::format("spill file {}: record length {} at offset {} is over "
                    "the limit",
                    path_, len, record_offset_));
  }
  GEOSYNC_RETURN_IF_ERROR(Read(len, record, "record"));
  if (Crc32c(*record) != crc) {
    return Status::Corruption(fmt::format(
        "spill file {}: checksum mismatch in the record at offset {}", path_, record_offset_));
  }
  return true;
}

Status SpillReader::Read(size_t n, std::vector<uint8_t>* out, std::string_view what) {
  out->clear();
  while (out->size() < n) {
    if (pos_ == buf_.size()) GEOSYNC_RETURN_IF_ERROR(Fill(what));
    size_t take = std::min(n - out->size(), buf_.size() - pos_);
    out->insert(out->end(), buf_.begin() + static_cast<ptrdiff_t>(pos_),
                buf_.begin() + static_cast<ptrdiff_t>(pos_ + take));
    pos_ += take;
    offset_ += take;
  }
  return Status::Ok();
}

// Refills the buffer from the current offset. A file shorter than the writer
// left it is truncated at the record being read.
Status SpillReader::Fill(std::string_view what) {
  const uint64_t at = offset_;
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>(kReadBuffer, size_ - std::min(size_, at)));
  size_t got = 0;
  buf_.resize(n);
  while (got < n) {
    ssize_t r = ::pread(fd_, buf_.data() + got, n - got, static_cast<off_t>(at + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("reading", path_);
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  if (got == 0) {
    return Status::Corruption(
        fmt::format("spill file {}: truncated {} at offset {}", path_, what, record_offset_));
  }
  buf_.resize(got);
  pos_ = 0;
  return Status::Ok();
}

StreamSpill::StreamSpill(std::string dir) : dir_(std::move(dir)) {}

StreamSpill::~StreamSpill() {
  while (!txns_.empty()) Drop(txns_.begin()->first);
}

std::string StreamSpill::PathFor(uint32_t xid) const {
  return fmt::format("{}/{}{}", dir_, xid, kSuffix);
}

uint64_t StreamSpill::Size(uint32_t xid) const {
  auto it = txns_.find(xid);
  return it == txns_.end() ? 0 : it->second.written + it->second.buffer.size();
}

Status StreamSpill::Reset() {
  while (!txns_.empty()) Drop(txns_.begin()->first);
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::Io(fmt::format("creating spill directory {}: {}", dir_, ec.message()));
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != kSuffix) continue;
    std::filesystem::remove(entry.path(), ec);
    if (ec) {
      return Status::Io(
          fmt::format("removing spill file {}: {}", entry.path().string(), ec.message()));
    }
  }
  if (ec) return Status::Io(fmt::format("listing spill directory {}: {}", dir_, ec.message()));
  return Status::Ok();
}

Status StreamSpill::Open(uint32_t xid, Txn* txn) {
  std::string path = PathFor(xid);
  txn->fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (txn->fd < 0) return ErrnoStatus("creating spill file", path);
  txn->buffer.assign(std::begin(kMagic), std::end(kMagic));
  return Status::Ok();
}

Status StreamSpill::Start(uint32_t xid, bool first_segment) {
  auto it = txns_.find(xid);
  if (it != txns_.end() && !first_segment) return Status::Ok();
  if (it == txns_.end() && !first_segment) {
    return Status::Protocol(fmt::format(
        "pgoutput Stream Start of xid {} continues a transaction whose first segment was "
        "not received on this connection",
        xid));
  }
  if (it != txns_.end()) Drop(xid);  // the first segment again: start over
  Txn& txn = txns_[xid];
  Status st = Open(xid, &txn);
  if (!st.ok()) txns_.erase(xid);
  return st;
}

Status StreamSpill::Append(uint32_t xid, uint32_t subxid, std::span<const uint8_t> payload) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) {
    return Status::Protocol(fmt::format("streamed message for xid {} outside its stream", xid));
  }
  if (payload.size() > kMaxRecord) {
    return Status::InvalidArgument(
        fmt::format("streamed message of {} bytes for xid {} is over "
                    "the {} byte limit",
                    payload.size(), xid, kMaxRecord));
  }
  Txn& txn = it->second;
  if (subxid != xid) {
    bool known = std::any_of(txn.subxacts.begin(), txn.subxacts.end(),
                             [&](const auto& s) { return s.first == subxid; });
    if (!known) txn.subxacts.emplace_back(subxid, txn.written + txn.buffer.size());
  }
  PutU32(&txn.buffer, static_cast<uint32_t>(payload.size()));
  PutU32(&txn.buffer, Crc32c(payload));
  txn.buffer.insert(txn.buffer.end(), payload.begin(), payload.end());
  if (txn.buffer.size() >= kWriteBuffer) return WriteBuffer(xid, &txn);
  return Status::Ok();
}

Status StreamSpill::WriteBuffer(uint32_t xid, Txn* txn) {
  if (txn->buffer.empty()) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(
      WriteAll(txn->fd, txn->buffer.data(), txn->buffer.size(), txn->written, PathFor(xid)));
  txn->written += txn->buffer.size();
  txn->buffer.clear();
  // A large message must not leave a large buffer behind.
  if (txn->buffer.capacity() > 2 * kWriteBuffer) txn->buffer.shrink_to_fit();
  return Status::Ok();
}

Status StreamSpill::Flush(uint32_t xid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) return Status::Ok();
  return WriteBuffer(xid, &it->second);
}

Status StreamSpill::Truncate(uint32_t xid, Txn* txn, uint64_t size) {
  GEOSYNC_RETURN_IF_ERROR(WriteBuffer(xid, txn));
  if (::ftruncate(txn->fd, static_cast<off_t>(size)) != 0) {
    return ErrnoStatus("truncating spill file", PathFor(xid));
  }
  txn->written = size;
  return Status::Ok();
}

Status StreamSpill::Abort(uint32_t xid, uint32_t subxid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) return Status::Ok();
  if (subxid == xid) {
    Drop(xid);
    return Status::Ok();
  }
  Txn& txn = it->second;
  auto sub = std::find_if(txn.subxacts.begin(), txn.subxacts.end(),
                          [&](const auto& s) { return s.first == subxid; });
  if (sub == txn.subxacts.end()) return Status::Ok();  // it wrote nothing we hold
  uint64_t offset = sub->second;
  // Later subxids first appeared after it: they were nested in it, or
  // started after it and are truncated away with it.
  txn.subxacts.erase(sub, txn.subxacts.end());
  return Truncate(xid, &txn, offset);
}

Result<SpillReader> StreamSpill::OpenReader(uint32_t xid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) {
    return Status::NotFound(fmt::format("no spill file for streamed xid {}", xid));
  }
  GEOSYNC_RETURN_IF_ERROR(WriteBuffer(xid, &it->second));
  return SpillReader(it->second.fd, PathFor(xid), it->second.written);
}

Status StreamSpill::Replay(uint32_t xid,
                           const std::function<Status(std::span<const uint8_t>)>& fn) {
  if (!Has(xid)) return Status::Ok();
  GEOSYNC_ASSIGN_OR_RETURN(SpillReader reader, OpenReader(xid));
  std::vector<uint8_t> record;
  for (;;) {
    Result<bool> more = reader.Next(&record);
    if (!more.ok()) return more.status();
    if (!*more) break;
    Status st = fn(record);
    if (!st.ok()) {
      return st.WithContext(fmt::format("replaying spill file {} record at offset {}",
                                        reader.path(), reader.record_offset()));
    }
  }
  Drop(xid);
  return Status::Ok();
}

void StreamSpill::Drop(uint32_t xid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) return;
  if (it->second.fd >= 0) ::close(it->second.fd);
  ::unlink(PathFor(xid).c_str());
  txns_.erase(it);
}

}  // namespace geosync
