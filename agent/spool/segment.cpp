// Spool record encoding and the buffered segment reader; the byte layout is
// documented in agent/spool/segment.h and docs/spool.md.
#include "agent/spool/segment.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/byte_order.h"
#include "common/checksum.h"

namespace geosync {
namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr std::string_view kSegmentSuffix = ".seg";

// The record header is little-endian (segment.h).
void PutU32(uint8_t* p, uint32_t v) { StoreLe(p, v); }
void PutU64(uint8_t* p, uint64_t v) { StoreLe(p, v); }
uint32_t GetU32(const uint8_t* p) { return LoadLe<uint32_t>(p); }
uint64_t GetU64(const uint8_t* p) { return LoadLe<uint64_t>(p); }

uint32_t RecordCrc(std::span<const uint8_t> header, std::span<const uint8_t> payload) {
  Crc32cBuilder crc;
  crc.Update(header.subspan(8));
  crc.Update(payload);
  return crc.Value();
}

bool ParseHex64(std::string_view text, uint64_t* out) {
  if (text.size() != 16) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
  }
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, 16);
  return ec == std::errc() && ptr == text.data() + text.size();
}

// Why a header is unacceptable, or empty when it is well formed.
std::string CheckHeader(const uint8_t* h) {
  if (!std::equal(kRecordMagic.begin(), kRecordMagic.end(), h)) {
    return fmt::format("bad magic {:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]);
  }
  if ((h[12] & ~kStandalone) != 0) return fmt::format("unknown flags 0x{:02x}", h[12]);
  if (h[13] != 0 || h[14] != 0 || h[15] != 0) return "nonzero reserved bytes";
  if (GetU32(h + 8) > kMaxRecordPayload) {
    return fmt::format("payload length {} over the limit {}", GetU32(h + 8), kMaxRecordPayload);
  }
  return {};
}

}  // namespace

std::array<uint8_t, kRecordHeaderSize> EncodeRecordHeader(uint64_t epoch, Lsn lsn, uint8_t flags,
                                                          std::span<const uint8_t> payload) {
  std::array<uint8_t, kRecordHeaderSize> h{};
  std::copy(kRecordMagic.begin(), kRecordMagic.end(), h.begin());
  PutU32(h.data() + 8, static_cast<uint32_t>(payload.size()));
  h[12] = flags;
  PutU64(h.data() + 16, epoch);
  PutU64(h.data() + 24, lsn.value());
  PutU32(h.data() + 4, RecordCrc(h, payload));
  return h;
}

std::string SegmentFileName(Position first) {
  return fmt::format("{:016X}-{:016X}{}", first.epoch, first.lsn.value(), kSegmentSuffix);
}

std::optional<Position> ParseSegmentFileName(std::string_view name) {
  if (name.size() != 16 + 1 + 16 + kSegmentSuffix.size() || name[16] != '-' ||
      !name.ends_with(kSegmentSuffix)) {
    return std::nullopt;
  }
  uint64_t epoch = 0;
  uint64_t lsn = 0;
  if (!ParseHex64(name.substr(0, 16), &epoch) || !ParseHex64(name.substr(17, 16), &lsn)) {
    return std::nullopt;
  }
  return Position{epoch, Lsn(lsn)};
}

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

SegmentReader::SegmentReader(int fd, std::string name, uint64_t offset)
    : fd_(fd), name_(std::move(name)), offset_(offset) {}

Result<SegmentReader::Step> SegmentReader::Next(uint64_t limit, SpoolRecord* out,
                                                std::string* problem) {
  auto complain = [&](Step step, std::string what) -> Result<Step> {
    if (problem != nullptr) *problem = std::move(what);
    return step;
  };
  if (offset_ >= limit) return Step::kEnd;
  std::array<uint8_t, kRecordHeaderSize> h;
  GEOSYNC_ASSIGN_OR_RETURN(size_t got, ReadAt(offset_, h, limit));
  if (got < h.size()) {
    return complain(Step::kIncomplete, fmt::format("incomplete record (header: {} of {} bytes)",
                                                   got, kRecordHeaderSize));
  }
  if (std::string bad = CheckHeader(h.data()); !bad.empty()) {
    return complain(Step::kBad, std::move(bad));
  }
  const uint32_t length = GetU32(h.data() + 8);
  if (limit - offset_ - kRecordHeaderSize < length) {
    return complain(Step::kIncomplete, fmt::format("incomplete record (payload: {} of {} bytes)",
                                                   limit - offset_ - kRecordHeaderSize, length));
  }
  out->payload.resize(length);
  GEOSYNC_ASSIGN_OR_RETURN(got, ReadAt(offset_ + kRecordHeaderSize, out->payload, limit));
  if (got < length) {
    // The file is shorter than `limit` said: someone cut it under us.
    return complain(Step::kIncomplete,
                    fmt::format("incomplete record (payload: {} of {} bytes; the file ends early)",
                                got, length));
  }
  if (RecordCrc(h, out->payload) != GetU32(h.data() + 4)) {
    return complain(Step::kBad, "checksum mismatch");
  }
  out->flags = h[12];
  out->epoch = GetU64(h.data() + 16);
  out->lsn = Lsn(GetU64(h.data() + 24));
  offset_ += kRecordHeaderSize + length;
  return Step::kRecord;
}

Result<size_t> SegmentReader::ReadAt(uint64_t pos, std::span<uint8_t> dst, uint64_t limit) {
  if (pos >= limit || dst.empty()) return size_t{0};
  dst = dst.first(std::min<uint64_t>(dst.size(), limit - pos));
  size_t copied = 0;
  // Whatever the buffer already holds.
  if (pos >= buf_pos_ && pos < buf_pos_ + buf_len_) {
    size_t skip = pos - buf_pos_;
    copied = std::min(dst.size(), buf_len_ - skip);
    std::memcpy(dst.data(), buf_.data() + skip, copied);
  }
  if (copied == dst.size()) return copied;
  pos += copied;
  std::span<uint8_t> rest = dst.subspan(copied);
  if (rest.size() >= kReadBufferBytes) {
    GEOSYNC_ASSIGN_OR_RETURN(size_t n, Pread(pos, rest));
    return copied + n;
  }
  buf_.resize(kReadBufferBytes);
  size_t want = std::min<uint64_t>(kReadBufferBytes, limit - pos);
  GEOSYNC_ASSIGN_OR_RETURN(buf_len_, Pread(pos, std::span(buf_).first(want)));
  buf_pos_ = pos;
  size_t n = std::min(rest.size(), buf_len_);
  std::memcpy(rest.data(), buf_.data(), n);
  return copied + n;
}

Result<size_t> SegmentReader::Pread(uint64_t pos, std::span<uint8_t> dst) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd_, dst.data() + done, dst.size() - done, static_cast<off_t>(pos + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(fmt::format("reading spool segment {} at offset {}: {}", name_, pos + done,
                                    std::strerror(errno)));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace geosync
