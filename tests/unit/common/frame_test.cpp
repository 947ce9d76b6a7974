// Frames and CRC-32C: header layout, the checks on every header field, the
// checksum over header and payload, and the incremental FrameReader over a
// byte stream fed in arbitrary pieces.
#include "common/frame.h"

#include <gtest/gtest.h>

#include <random>

#include "common/checksum.h"
#include "common/encoding.h"

namespace geosync {
namespace {

std::string MakeFrame(FrameType type, std::string_view payload) {
  std::string out;
  AppendFrame(type, 0, static_cast<uint32_t>(payload.size()), AsBytes(payload), &out);
  return out;
}

std::string Header(uint8_t version, uint8_t type, uint8_t flags, uint8_t reserved,
                   uint32_t payload_len, uint32_t raw_len) {
  std::string h;
  PutFixed32(kFrameMagic, &h);
  h += static_cast<char>(version);
  h += static_cast<char>(type);
  h += static_cast<char>(flags);
  h += static_cast<char>(reserved);
  PutFixed32(payload_len, &h);
  PutFixed32(raw_len, &h);
  PutFixed32(0, &h);
  return h;
}

// Feeds `bytes` and returns the first Next() result.
Result<std::optional<Frame>> ReadOne(std::string_view bytes) {
  FrameReader reader;
  reader.Feed(AsBytes(bytes));
  return reader.Next();
}

TEST(Crc32cTest, MatchesTheCastagnoliCheckValue) {
  EXPECT_EQ(Crc32c(std::string_view("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string_view()), 0u);
  // RFC 3720 B.4: 32 bytes of zeros.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
}

TEST(Crc32cTest, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 31));
  for (size_t split : {size_t{0}, size_t{1}, size_t{4}, size_t{500}, size_t{999}, size_t{1000}}) {
    Crc32cBuilder crc;
    crc.Update(std::string_view(data).substr(0, split));
    crc.Update(AsBytes(data).subspan(split));
    EXPECT_EQ(crc.Value(), Crc32c(data)) << "split at " << split;
  }
  Crc32cBuilder crc;
  crc.Update(std::string_view("1234"));
  EXPECT_EQ(crc.Value(), Crc32c(std::string_view("1234")));
  crc.Update(std::string_view("56789"));  // Value() did not end the computation
  EXPECT_EQ(crc.Value(), 0xE3069283u);
  crc.Reset();
  EXPECT_EQ(crc.Value(), 0u);
}

// The CRC32 instruction and Boost's table agree on every length and
// alignment, incrementally too (the builder continues either's register).
TEST(Crc32cTest, HardwareAndTableAgree) {
#if defined(__x86_64__)
  EXPECT_TRUE(crc32c_internal::Hardware()) << "every x86-64 CPU since 2008 has SSE4.2";
#endif
  std::mt19937 rng(7);
  std::string data(4096 + 7, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  for (size_t offset : {size_t{0}, size_t{1}, size_t{3}, size_t{7}}) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{63},
                       size_t{1000}, size_t{4096}}) {
      auto bytes = AsBytes(data).subspan(offset, len);
      EXPECT_EQ(Crc32c(bytes), crc32c_internal::Portable(bytes))
          << "offset " << offset << " length " << len;
    }
  }
  Crc32cBuilder crc;
  crc.Update(AsBytes(data).subspan(0, 13));
  crc.Update(AsBytes(data).subspan(13));
  EXPECT_EQ(crc.Value(), crc32c_internal::Portable(AsBytes(data)));
}

TEST(FrameTest, HeaderStartsWithGsynAndIsLittleEndian) {
  std::string frame = MakeFrame(FrameType::kAck, "abc");
  ASSERT_EQ(frame.size(), kFrameHeaderSize + 3);
  EXPECT_EQ(frame.substr(0, 4), "GSYN");
  EXPECT_EQ(frame[4], 1);  // version
  EXPECT_EQ(frame[5], 5);  // Ack
  EXPECT_EQ(frame[6], 0);  // flags
  EXPECT_EQ(frame[7], 0);  // reserved
  EXPECT_EQ(frame.substr(8, 4), std::string("\x03\x00\x00\x00", 4));
  EXPECT_EQ(frame.substr(12, 4), std::string("\x03\x00\x00\x00", 4));
  Crc32cBuilder crc;
  crc.Update(std::string_view(frame).substr(0, 16));
  crc.Update(std::string_view("abc"));
  EXPECT_EQ(DecodeFixed32(AsBytes(frame).data() + 16), crc.Value())
      << "the checksum covers header bytes 0-15 and the payload";
  EXPECT_EQ(frame.substr(20), "abc");
}

TEST(FrameTest, HeaderRoundTrips) {
  FrameHeader h{FrameType::kSeedFirst, kFrameCompressed, 12345, kMaxFrameRawSize, 0xDEADBEEF};
  auto bytes = EncodeFrameHeader(h);
  auto decoded = DecodeFrameHeader(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, h);
}

TEST(FrameTest, ValidFrameComesOutOfTheReader) {
  auto r = ReadOne(MakeFrame(FrameType::kData, "payload"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->header.type, FrameType::kData);
  EXPECT_EQ((*r)->payload, "payload");
}

TEST(FrameTest, EmptyPayloadIsAFrame) {
  auto r = ReadOne(MakeFrame(FrameType::kHeartbeat, ""));
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->payload, "");
}

TEST(FrameTest, FlippedByteInPayloadFailsChecksum) {
  const std::string frame = MakeFrame(FrameType::kData, "some replicated rows");
  for (size_t i = kFrameHeaderSize; i < frame.size(); ++i) {
    std::string bad = frame;
    bad[i] ^= 0x01;
    auto r = ReadOne(bad);
    ASSERT_FALSE(r.ok()) << "flip at " << i << " went unnoticed";
    EXPECT_EQ(r.status().code(), Code::kCorruption);
    EXPECT_EQ(r.status().message().find("frame: checksum mismatch (stored 0x"), 0u)
        << r.status().message();
    EXPECT_NE(r.status().message().find("in frame at stream offset 0"), std::string::npos);
  }
}

TEST(FrameTest, FlippedHeaderBitAtEachPositionIsDetected) {
  const std::string frame = MakeFrame(FrameType::kData, "some replicated rows");
  for (size_t i = 0; i < kFrameHeaderSize; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = frame;
      bad[i] ^= static_cast<char>(1 << bit);
      auto r = ReadOne(bad);
      EXPECT_FALSE(r.ok()) << "flip of bit " << bit << " in header byte " << i << " went unnoticed";
    }
  }
}

TEST(FrameTest, FlippedHeaderBitInACompressedFrameIsNeverDelivered) {
  // With the compressed flag, raw_len is free: a flip there is caught by the
  // checksum; a flip that grows payload_len leaves the reader waiting.
  std::string payload = "pretend zstd bytes";
  std::string frame;
  AppendFrame(FrameType::kData, kFrameCompressed, 1000, AsBytes(payload), &frame);
  const std::string padding(64, '\0');
  for (size_t i = 0; i < kFrameHeaderSize; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = frame;
      bad[i] ^= static_cast<char>(1 << bit);
      auto r = ReadOne(bad + padding);
      EXPECT_TRUE(!r.ok() || !r->has_value())
          << "flip of bit " << bit << " in header byte " << i << " delivered a frame";
    }
  }
}

TEST(FrameTest, TruncatedFrameWaitsForMoreBytes) {
  const std::string frame = MakeFrame(FrameType::kData, "0123456789");
  FrameReader reader;
  for (size_t i = 0; i + 1 < frame.size(); ++i) {
    reader.Feed(AsBytes(frame).subspan(i, 1));
    auto r = reader.Next();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(r->has_value()) << "a frame came out after " << i + 1 << " bytes";
  }
  reader.Feed(AsBytes(frame).last(1));
  auto r = reader.Next();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->payload, "0123456789");
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_EQ(reader.stream_offset(), frame.size());
}

TEST(FrameTest, FramesSplitAtEveryPointComeOutInOrder) {
  std::string stream;
  for (int i = 0; i < 5; ++i) stream += MakeFrame(FrameType::kData, std::string(i * 7, 'a' + i));
  for (size_t split = 0; split <= stream.size(); ++split) {
    FrameReader reader;
    std::vector<std::string> got;
    for (auto piece : {AsBytes(stream).first(split), AsBytes(stream).subspan(split)}) {
      reader.Feed(piece);
      for (;;) {
        auto r = reader.Next();
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        if (!r->has_value()) break;
        got.push_back((*r)->payload);
      }
    }
    ASSERT_EQ(got.size(), 5u) << "split at " << split;
    for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i], std::string(i * 7, 'a' + i));
  }
}

TEST(FrameTest, BadMagicIsRejectedWithItsStreamOffset) {
  const std::string first = MakeFrame(FrameType::kData, "ok");
  std::string second = MakeFrame(FrameType::kData, "bad");
  second[3] = 'X';
  FrameReader reader;
  reader.Feed(AsBytes(first + second));
  auto ok = reader.Next();
  ASSERT_TRUE(ok.ok() && ok->has_value());
  auto r = reader.Next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_EQ(r.status().message(),
            "frame: bad magic 0x58595347 at stream offset " + std::to_string(first.size()));
}

TEST(FrameTest, ErrorsAreSticky) {
  std::string bad = MakeFrame(FrameType::kData, "x");
  bad[0] = 'g';
  FrameReader reader;
  reader.Feed(AsBytes(bad));
  auto first = reader.Next();
  ASSERT_FALSE(first.ok());
  reader.Feed(AsBytes(MakeFrame(FrameType::kData, "good")));
  auto again = reader.Next();
  ASSERT_FALSE(again.ok()) << "a broken stream cannot be resynchronised";
  EXPECT_EQ(again.status().message(), first.status().message());
}

TEST(FrameTest, UnknownVersionIsRejected) {
  auto r = DecodeFrameHeader(AsBytes(Header(2, 1, 0, 0, 0, 0)), 40);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "frame: unknown version 2 (this build reads 1) at stream offset 40");
}

TEST(FrameTest, UnknownTypeIsRejected) {
  for (uint8_t type : {0, 7, 15, 32, 255}) {
    auto r = DecodeFrameHeader(AsBytes(Header(1, type, 0, 0, 0, 0)));
    ASSERT_FALSE(r.ok()) << "type " << int{type};
    EXPECT_EQ(r.status().message(),
              "frame: unknown type " + std::to_string(type) + " at stream offset 0");
  }
  for (uint8_t type : {1, 6, 16, 31}) {
    EXPECT_TRUE(DecodeFrameHeader(AsBytes(Header(1, type, 0, 0, 0, 0))).ok())
        << "type " << int{type};
  }
}

TEST(FrameTest, UnknownFlagBitsAreRejected) {
  auto r = DecodeFrameHeader(AsBytes(Header(1, 1, 0x81, 0, 0, 0)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "frame: unknown flag bits 0x80 at stream offset 0");
}

TEST(FrameTest, NonZeroReservedByteIsRejected) {
  auto r = DecodeFrameHeader(AsBytes(Header(1, 1, 0, 1, 0, 0)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "frame: reserved byte is 0x01, not 0 at stream offset 0");
}

TEST(FrameTest, OversizedLengthRejectedBeforeAllocation) {
  // Only the 20 header bytes arrive: the reader must refuse at once rather
  // than wait to buffer 4 GiB.
  FrameReader reader;
  reader.Feed(AsBytes(Header(1, 1, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF)));
  auto r = reader.Next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_EQ(r.status().message(),
            "frame: payload length 4294967295 exceeds the 16777216 byte limit at stream offset 0");
  EXPECT_EQ(reader.buffered(), kFrameHeaderSize);

  EXPECT_FALSE(
      DecodeFrameHeader(AsBytes(Header(1, 1, 0, 0, kMaxFramePayload + 1, kMaxFramePayload + 1)))
          .ok());
  EXPECT_TRUE(
      DecodeFrameHeader(AsBytes(Header(1, 1, 0, 0, kMaxFramePayload, kMaxFramePayload))).ok());
  auto raw =
      DecodeFrameHeader(AsBytes(Header(1, 1, kFrameCompressed, 0, 10, kMaxFrameRawSize + 1)));
  ASSERT_FALSE(raw.ok());
  EXPECT_EQ(raw.status().message(),
            "frame: raw length 67108865 exceeds the 67108864 byte limit at stream offset 0");
}

TEST(FrameTest, UncompressedFrameMustHaveEqualLengths) {
  auto r = DecodeFrameHeader(AsBytes(Header(1, 1, 0, 0, 10, 11)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "frame: raw length 11 differs from payload length 10 in an uncompressed frame at "
            "stream offset 0");
}

TEST(FrameTest, VerifyFrameChecksPayloadLengthAndChecksum) {
  std::string frame = MakeFrame(FrameType::kData, "abcdef");
  auto header = DecodeFrameHeader(AsBytes(frame).first(kFrameHeaderSize));
  ASSERT_TRUE(header.ok());
  EXPECT_TRUE(VerifyFrame(*header, AsBytes(frame).subspan(kFrameHeaderSize)).ok());
  Status shorter = VerifyFrame(*header, AsBytes(frame).subspan(kFrameHeaderSize, 5));
  EXPECT_EQ(shorter.message(), "frame: payload is 5 bytes, header says 6");
  FrameHeader other_type = *header;
  other_type.type = FrameType::kAck;
  Status st = VerifyFrame(other_type, AsBytes(frame).subspan(kFrameHeaderSize));
  EXPECT_EQ(st.code(), Code::kCorruption) << "the checksum covers the header fields too";
}

}  // namespace
}  // namespace geosync
