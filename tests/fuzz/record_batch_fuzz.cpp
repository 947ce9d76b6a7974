// Record batches (common/record_batch.h), the payload of Data frames, on one
// connection: a sequence of batches through one BatchDecoder, whose state
// (positions, xids, cached relations) carries from batch to batch.
//
// Oracles: a decoded batch never holds more than the decoder's cap; and what
// was decoded, encoded again by a fresh BatchEncoder, decodes to the same
// records (the replica's spool must hold the source's bytes exactly).
//
// Input: fuzz::Pieces, one batch each.
#include "common/encoding.h"
#include "common/record_batch.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

namespace {
constexpr size_t kCap = 1u << 20;  // small, so that the cap is reached
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Pieces pieces({data, size});
  BatchDecoder decoder(kCap);
  BatchEncoder encoder;
  BatchDecoder again(kCap);
  fuzz::Bytes batch;
  while (pieces.Next(&batch)) {
    auto records = decoder.Decode(batch);
    if (!records.ok()) {
      GEOSYNC_FUZZ_CHECK(records.status().code() == Code::kProtocol);
      break;  // the receiver drops the connection
    }
    size_t total = 0;
    std::string reencoded;
    for (const BatchRecord& r : *records) {
      total += r.payload.size();
      (void)DecodeEvent(AsBytes(r.payload));
      encoder.Append(r.epoch, r.lsn, r.flags, AsBytes(r.payload), &reencoded);
    }
    GEOSYNC_FUZZ_CHECK(total <= kCap);
    if (records->empty()) continue;
    auto round_trip = again.Decode(AsBytes(reencoded));
    GEOSYNC_FUZZ_CHECK(round_trip.ok());
    GEOSYNC_FUZZ_CHECK(*round_trip == *records);
  }
  return 0;
}
