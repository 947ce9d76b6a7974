// The control records of the site-to-site protocol (common/control.h):
// Hello, HelloReply, Heartbeat, Ack, Error. They arrive before any peer is
// trusted (Hello is read before TLS names are checked against the epoch).
//
// Oracle: a record that decodes encodes back to a record that decodes to
// the same value.
//
// Input: byte 0 picks the record type (mod 5); the rest is the record.
#include "common/control.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

using fuzz::RoundTrip;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fuzz::Bytes in(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      RoundTrip<Hello>(in, DecodeHello, EncodeHello);
      break;
    case 1:
      RoundTrip<HelloReply>(in, DecodeHelloReply, EncodeHelloReply);
      break;
    case 2:
      RoundTrip<Heartbeat>(in, DecodeHeartbeat, EncodeHeartbeat);
      break;
    case 3:
      RoundTrip<Ack>(in, DecodeAck, EncodeAck);
      break;
    default:
      RoundTrip<ErrorMessage>(in, DecodeErrorMessage, EncodeErrorMessage);
  }
  return 0;
}
