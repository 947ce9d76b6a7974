// The receiving end of a site-to-site connection, as the bytes come off the
// socket: FrameDecoder (header, checksum, zstd) fed in chunks, then the
// decoder each frame type goes to (record batches and their Event records,
// the control records, the seeding records).
//
// Input: byte 0 bit 0 = repair frame checksums first; byte 1 = feed chunk
// size - 1 (mod 64); the rest is the stream.
#include <optional>

#include "common/codec.h"
#include "common/control.h"
#include "common/encoding.h"
#include "common/frame.h"
#include "common/record_batch.h"
#include "common/seed_protocol.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

namespace {

void DecodeBody(FrameType type, fuzz::Bytes p, BatchDecoder* batches, bool* batch_failed) {
  switch (type) {
    case FrameType::kData:
      if (*batch_failed) return;  // the receiver drops the connection
      if (auto records = batches->Decode(p); records.ok()) {
        for (const BatchRecord& r : *records) (void)DecodeEvent(AsBytes(r.payload));
      } else {
        *batch_failed = true;
      }
      return;
    case FrameType::kHello:
      (void)DecodeHello(p);
      return;
    case FrameType::kHelloReply:
      (void)DecodeHelloReply(p);
      return;
    case FrameType::kHeartbeat:
      (void)DecodeHeartbeat(p);
      return;
    case FrameType::kAck:
      (void)DecodeAck(p);
      return;
    case FrameType::kError:
      (void)DecodeErrorMessage(p);
      return;
    default:
      (void)DecodeSeedRequest(p);
      (void)DecodeSeedManifest(p);
      (void)DecodeSeedData(p);
      (void)DecodeSeedChunkEnd(p);
      (void)DecodeSeedFinish(p);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool repair = (data[0] & 1) != 0;
  const size_t chunk = data[1] % 64 + 1;
  std::vector<uint8_t> stream(data + 2, data + size);
  // Header: checksum at 16 over bytes 0-15 and the payload; length at 8.
  if (repair) fuzz::RepairChecksums(&stream, kFrameHeaderSize, 8, 16, 0, 16);

  FrameDecoder decoder;
  BatchDecoder batches(1u << 20);
  bool batch_failed = false;
  size_t fed = 0;
  while (true) {
    auto next = decoder.Next();
    if (!next.ok()) {
      const Code code = next.status().code();
      GEOSYNC_FUZZ_CHECK(code == Code::kProtocol || code == Code::kCorruption);
      // Errors are sticky: the stream cannot be resynchronised.
      GEOSYNC_FUZZ_CHECK(!decoder.Next().ok());
      break;
    }
    if (!next->has_value()) {
      if (fed == stream.size()) break;
      const size_t n = std::min(chunk, stream.size() - fed);
      decoder.Feed(std::span<const uint8_t>(stream).subspan(fed, n));
      fed += n;
      continue;
    }
    const DecodedFrame& frame = **next;
    GEOSYNC_FUZZ_CHECK(frame.payload.size() <= kMaxFrameRawSize);
    DecodeBody(frame.type, AsBytes(frame.payload), &batches, &batch_failed);
  }
  return 0;
}
