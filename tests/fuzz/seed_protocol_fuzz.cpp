// The seeding protocol's records (common/seed_protocol.h): the request a
// joining site sends, and the manifest, COPY data, chunk ends and finish
// that travel during a seed.
//
// Oracle: a record that decodes encodes back to a record that decodes to
// the same value.
//
// Input: byte 0 picks the record type (mod 5); the rest is the record.
#include "common/seed_protocol.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

using fuzz::RoundTrip;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fuzz::Bytes in(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      RoundTrip<SeedRequest>(in, DecodeSeedRequest, EncodeSeedRequest);
      break;
    case 1:
      RoundTrip<SeedManifest>(in, DecodeSeedManifest, EncodeSeedManifest);
      break;
    case 2: {
      auto copy = DecodeSeedData(in);
      if (!copy.ok()) {
        GEOSYNC_FUZZ_CHECK(copy.status().code() == Code::kProtocol);
        break;
      }
      std::string out;
      EncodeSeedData(std::string_view(reinterpret_cast<const char*>(copy->data()), copy->size()),
                     &out);
      auto again = DecodeSeedData(AsBytes(out));
      GEOSYNC_FUZZ_CHECK(again.ok());
      GEOSYNC_FUZZ_CHECK(std::equal(again->begin(), again->end(), copy->begin(), copy->end()));
      break;
    }
    case 3:
      RoundTrip<SeedChunkEnd>(in, DecodeSeedChunkEnd, EncodeSeedChunkEnd);
      break;
    default:
      RoundTrip<SeedFinish>(in, DecodeSeedFinish, EncodeSeedFinish);
  }
  return 0;
}
