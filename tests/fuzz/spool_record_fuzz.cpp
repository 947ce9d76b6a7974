// The spool's record reader (agent/spool/segment.h) over a segment file
// whose bytes are the input: what a restart reads back from disk after a
// torn write, a flipped bit or a hostile file, then each record's Event
// payload (common/encoding.h) as the applier decodes it.
//
// Oracles: the reader stays inside the limit it was given, moves forward on
// every record, and on a bad or incomplete record stays at its start.
//
// Input: byte 0 bit 0 = repair record checksums first; the rest is the file.
#include <sys/mman.h>
#include <unistd.h>

#include "agent/spool/segment.h"
#include "common/encoding.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> file(data + 1, data + size);
  // Header: CRC at 4 over bytes 8..31 and the payload; length at 8.
  if (data[0] & 1) fuzz::RepairChecksums(&file, kRecordHeaderSize, 8, 4, 8, kRecordHeaderSize);

  UniqueFd fd(memfd_create("segment", MFD_CLOEXEC));
  GEOSYNC_FUZZ_CHECK(fd.valid());
  size_t written = 0;
  while (written < file.size()) {
    ssize_t n = write(fd.get(), file.data() + written, file.size() - written);
    GEOSYNC_FUZZ_CHECK(n > 0);
    written += static_cast<size_t>(n);
  }
  SegmentReader reader(fd.get(), "fuzz.seg", 0);
  while (true) {
    const uint64_t before = reader.offset();
    SpoolRecord record;
    std::string problem;
    auto step = reader.Next(file.size(), &record, &problem);
    if (!step.ok()) break;
    if (*step == SegmentReader::Step::kRecord) {
      GEOSYNC_FUZZ_CHECK(reader.offset() == before + kRecordHeaderSize + record.payload.size());
      GEOSYNC_FUZZ_CHECK(reader.offset() <= file.size());
      (void)DecodeEvent(record.payload);
      continue;
    }
    GEOSYNC_FUZZ_CHECK(reader.offset() == before);
    if (*step != SegmentReader::Step::kEnd) GEOSYNC_FUZZ_CHECK(!problem.empty());
    break;
  }
  return 0;
}
