// The zstd codec: one stream per connection flushed per frame, level 0 as
// pass-through, the output cap and corrupt input; and FrameEncoder/
// FrameDecoder carrying payloads across a byte stream.
#include "common/codec.h"

#include <random>

#include <gtest/gtest.h>

#include "common/control.h"
#include "common/encoding.h"

namespace geosync {
namespace {

// The Data payload of one pgbench-like transaction: similar to its
// neighbours, as consecutive transactions on a real stream are.
std::string PgbenchPayload(uint32_t n) {
  const std::string aid = std::to_string(100000 + (n * 7919) % 900000);
  const std::string delta = std::to_string(static_cast<int>(n % 10000) - 5000);
  std::vector<Event> txn = {
      BeginEvent{1000 + n, Lsn(0x3A000000 + n * 0x400ull), 760000000000000 + n * 997},
      RowChange{RowOp::kUpdate,
                16390,
                0,
                {},
                {{DatumKind::kText, aid},
                 {DatumKind::kText, "1"},
                 {DatumKind::kText, delta},
                 {DatumKind::kText, std::string(84, ' ')}}},
      RowChange{RowOp::kUpdate,
                16387,
                0,
                {},
                {{DatumKind::kText, std::to_string(n % 10)},
                 {DatumKind::kText, "1"},
                 {DatumKind::kText, delta},
                 {DatumKind::kNull, ""}}},
      RowChange{RowOp::kInsert,
                16393,
                0,
                {},
                {{DatumKind::kText, std::to_string(n % 10)},
                 {DatumKind::kText, "1"},
                 {DatumKind::kText, aid},
                 {DatumKind::kText, delta},
                 {DatumKind::kText, "2024-01-30 10:11:12.123456"},
                 {DatumKind::kNull, ""}}},
      CommitEvent{1000 + n, Lsn(0x3A000300 + n * 0x400ull), Lsn(0x3A000330 + n * 0x400ull),
                  760000000000000 + n * 997},
  };
  std::string out;
  EncodeEvents(txn, &out);
  return out;
}

TEST(CodecTest, ChunksRoundTripThroughOneStream) {
  StreamCompressor c(3);
  StreamDecompressor d;
  for (uint32_t i = 0; i < 50; ++i) {
    std::string raw = PgbenchPayload(i) + std::string(i * 100, static_cast<char>(i));
    auto compressed = c.Compress(AsBytes(raw));
    ASSERT_TRUE(compressed.ok()) << compressed.status().ToString();
    auto back = d.Decompress(AsBytes(*compressed), raw.size());
    ASSERT_TRUE(back.ok()) << "chunk " << i << ": " << back.status().ToString();
    EXPECT_EQ(*back, raw) << "chunk " << i << " decodes on arrival";
  }
}

TEST(CodecTest, EmptyChunkRoundTrips) {
  StreamCompressor c(1);
  StreamDecompressor d;
  auto compressed = c.Compress({});
  ASSERT_TRUE(compressed.ok());
  auto back = d.Decompress(AsBytes(*compressed), 0);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "");
}

TEST(CodecTest, SharedStreamBeatsIndependentlyCompressedFrames) {
  constexpr uint32_t kFrames = 1000;
  // Every 10th frame is also compressed alone (a fresh context per frame is
  // slow under ASan); both totals cover the same sampled frames.
  constexpr uint32_t kSampleEvery = 10;
  StreamCompressor shared(3);
  StreamDecompressor decompressor;
  size_t raw_sampled = 0, shared_sampled = 0, independent_sampled = 0;
  for (uint32_t i = 0; i < kFrames; ++i) {
    const std::string raw = PgbenchPayload(i);
    auto s = shared.Compress(AsBytes(raw));
    ASSERT_TRUE(s.ok());
    auto back = decompressor.Decompress(AsBytes(*s), raw.size());
    ASSERT_TRUE(back.ok() && *back == raw) << "frame " << i;
    if (i % kSampleEvery != 0) continue;
    raw_sampled += raw.size();
    shared_sampled += s->size();
    StreamCompressor fresh(3);
    independent_sampled += fresh.Compress(AsBytes(raw))->size();
  }
  // Alone, a ~250-byte transaction compresses about 2x; with the stream's
  // history behind it, mostly what differs from its neighbours is sent.
  EXPECT_LT(shared_sampled * 2, independent_sampled)
      << "per frame: raw " << raw_sampled / (kFrames / kSampleEvery) << " bytes, shared stream "
      << shared_sampled / (kFrames / kSampleEvery) << ", independent "
      << independent_sampled / (kFrames / kSampleEvery);
}

TEST(CodecTest, LevelZeroPassesThrough) {
  StreamCompressor c(0);
  EXPECT_FALSE(c.enabled());
  const std::string raw = PgbenchPayload(1);
  auto out = c.Compress(AsBytes(raw));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, raw);

  FrameEncoder encoder(0);
  std::string wire;
  ASSERT_TRUE(encoder.Encode(FrameType::kData, AsBytes(raw), &wire).ok());
  auto header = DecodeFrameHeader(AsBytes(wire).first(kFrameHeaderSize));
  ASSERT_TRUE(header.ok());
  EXPECT_FALSE(header->compressed()) << "flag bit 0 stays clear at level 0";
  EXPECT_EQ(wire.substr(kFrameHeaderSize), raw);
}

TEST(CodecTest, GarbageInputIsCorruption) {
  StreamDecompressor d;
  const std::string garbage = "this is not a zstd stream at all";
  auto r = d.Decompress(AsBytes(garbage), 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_EQ(r.status().message().find("zstd decompress: "), 0u) << r.status().message();
}

TEST(CodecTest, TruncatedChunkIsCorruption) {
  StreamCompressor c(3);
  const std::string raw = PgbenchPayload(7);
  auto compressed = c.Compress(AsBytes(raw));
  ASSERT_TRUE(compressed.ok());
  StreamDecompressor d;
  auto r = d.Decompress(AsBytes(*compressed).first(compressed->size() - 3), raw.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
}

TEST(CodecTest, CorruptCompressedBytesNeverCrashOrOverflow) {
  // zstd's own checksum is off (the frame CRC covers these bytes), so some
  // flips decode anyway (a changed window descriptor, say); what must hold is
  // no out-of-bounds access (ASan) and never output of another size.
  StreamCompressor c(3);
  const std::string raw = PgbenchPayload(3) + PgbenchPayload(4);
  auto compressed = c.Compress(AsBytes(raw));
  ASSERT_TRUE(compressed.ok());
  int errors = 0;
  for (size_t i = 0; i < compressed->size(); ++i) {
    std::string bad = *compressed;
    bad[i] ^= 0x5A;
    StreamDecompressor d;
    auto r = d.Decompress(AsBytes(bad), raw.size());
    if (!r.ok()) {
      ++errors;
      EXPECT_TRUE(r.status().code() == Code::kCorruption || r.status().code() == Code::kProtocol);
    } else {
      EXPECT_EQ(r->size(), raw.size());
    }
  }
  EXPECT_GT(errors, static_cast<int>(compressed->size()) / 2) << "most flips are detected";
}

TEST(CodecTest, DecompressionRespectsTheCap) {
  StreamCompressor c(3);
  const std::string raw(1 << 20, 'z');
  auto compressed = c.Compress(AsBytes(raw));
  ASSERT_TRUE(compressed.ok());
  StreamDecompressor d;
  auto r = d.Decompress(AsBytes(*compressed), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "zstd: input decompresses to more than 1000 bytes");

  StreamDecompressor d2;
  auto over = d2.Decompress(AsBytes(*compressed), kMaxFrameRawSize + 1);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), Code::kProtocol);
  EXPECT_EQ(over.status().message(), "zstd: raw size 67108865 exceeds the 67108864 byte limit");
}

TEST(CodecTest, OutputExactlyAtTheDeclaredSizeIsAccepted) {
  StreamCompressor c(3);
  const std::string raw(200000, 'q');
  auto compressed = c.Compress(AsBytes(raw));
  ASSERT_TRUE(compressed.ok());
  StreamDecompressor d;
  auto r = d.Decompress(AsBytes(*compressed), raw.size());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, raw);
  StreamDecompressor d2;
  auto fewer = d2.Decompress(AsBytes(*compressed), raw.size() + 1);
  ASSERT_FALSE(fewer.ok());
  EXPECT_EQ(fewer.status().message(), "zstd: input decompresses to 200000 bytes, expected 200001");
}

TEST(CodecTest, DecompressionBombStopsAtTheCap) {
  // 80 MiB of zeros shrink to a few KiB; a peer claiming the 64 MiB maximum
  // must get an error, not 80 MiB of buffer.
  StreamCompressor c(1);
  std::string bomb;
  const std::string chunk(1 << 20, '\0');
  for (int i = 0; i < 80; ++i) bomb += *c.Compress(AsBytes(chunk));
  ASSERT_LT(bomb.size(), 64u * 1024);
  StreamDecompressor d;
  auto r = d.Decompress(AsBytes(bomb), kMaxFrameRawSize);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "zstd: input decompresses to more than 67108864 bytes");
}

TEST(CodecTest, DecompressorErrorsAreSticky) {
  StreamDecompressor d;
  ASSERT_FALSE(d.Decompress(AsBytes(std::string("junk")), 4).ok());
  StreamCompressor c(3);
  auto good = c.Compress(AsBytes(std::string("fine")));
  EXPECT_FALSE(d.Decompress(AsBytes(*good), 4).ok()) << "a broken stream stays broken";
}

TEST(FrameCodecTest, FramesRoundTripOverAStreamInOddPieces) {
  FrameEncoder encoder(3);
  std::string wire;
  std::vector<std::pair<FrameType, std::string>> sent;
  std::string hello;
  EncodeHello(Hello{kProtocolVersion, "cluster", "site", 1, {}, kHelloAcceptsZstd}, &hello);
  sent.emplace_back(FrameType::kHello, hello);
  for (uint32_t i = 0; i < 200; ++i) {
    sent.emplace_back(FrameType::kData, PgbenchPayload(i));
    if (i % 50 == 0) {
      std::string ack;
      EncodeAck(Ack{{1, Lsn(i)}, {1, Lsn(i)}, {1, Lsn(i)}, i}, &ack);
      sent.emplace_back(FrameType::kAck, ack);
    }
  }
  for (const auto& [type, payload] : sent) {
    ASSERT_TRUE(encoder.Encode(type, AsBytes(payload), &wire).ok());
  }
  EXPECT_EQ(static_cast<uint8_t>(wire[6]), 0) << "Hello goes uncompressed";

  FrameDecoder decoder;
  std::vector<std::pair<FrameType, std::string>> got;
  for (size_t pos = 0, step = 1; pos < wire.size(); pos += step, step = step * 3 % 997 + 1) {
    decoder.Feed(AsBytes(wire).subspan(pos, std::min(step, wire.size() - pos)));
    for (;;) {
      auto r = decoder.Next();
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      if (!r->has_value()) break;
      got.emplace_back((*r)->type, std::move((*r)->payload));
    }
  }
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].first, sent[i].first) << "frame " << i;
    EXPECT_EQ(got[i].second, sent[i].second) << "frame " << i;
  }
}

TEST(FrameCodecTest, FlippedByteInCompressedFrameIsCaughtByTheChecksum) {
  FrameEncoder encoder(3);
  std::string wire;
  const std::string raw = PgbenchPayload(1);
  ASSERT_TRUE(encoder.Encode(FrameType::kData, AsBytes(raw), &wire).ok());
  ASSERT_NE(wire[6] & kFrameCompressed, 0);
  wire[kFrameHeaderSize + 5] ^= 0x10;
  FrameDecoder decoder;
  decoder.Feed(AsBytes(wire));
  auto r = decoder.Next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("checksum mismatch"), std::string::npos);
}

TEST(FrameCodecTest, DecodeTakesAHeaderAndPayloadReadSeparately) {
  FrameEncoder encoder(3);
  FrameDecoder decoder;
  for (uint32_t i = 0; i < 3; ++i) {
    std::string wire;
    const std::string raw = PgbenchPayload(i);
    ASSERT_TRUE(encoder.Encode(FrameType::kData, AsBytes(raw), &wire).ok());
    auto header = DecodeFrameHeader(AsBytes(wire).first(kFrameHeaderSize));
    ASSERT_TRUE(header.ok());
    auto payload = decoder.Decode(*header, AsBytes(wire).subspan(kFrameHeaderSize));
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    EXPECT_EQ(*payload, raw);
  }
}

TEST(FrameCodecTest, OversizedRawPayloadIsRefused) {
  FrameEncoder encoder(3);
  std::string wire;
  const std::string raw(kMaxFramePayload + 1, 'x');
  Status st = encoder.Encode(FrameType::kData, AsBytes(raw), &wire);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(wire.empty());
}

TEST(FrameCodecTest, PayloadNearTheLimitIsSentPlainAndTheStreamStaysInStep) {
  // Incompressible bytes at the limit could compress to more than the limit,
  // so they go plain; the next compressed frame must still decode.
  std::mt19937 rng(42);
  std::string big(kMaxFramePayload, '\0');
  for (char& ch : big) ch = static_cast<char>(rng());
  FrameEncoder encoder(1);
  std::string wire;
  ASSERT_TRUE(encoder.Encode(FrameType::kData, AsBytes(PgbenchPayload(1)), &wire).ok());
  ASSERT_TRUE(encoder.Encode(FrameType::kData, AsBytes(big), &wire).ok());
  ASSERT_TRUE(encoder.Encode(FrameType::kData, AsBytes(PgbenchPayload(2)), &wire).ok());
  FrameDecoder decoder;
  decoder.Feed(AsBytes(wire));
  std::vector<std::string> got;
  for (;;) {
    auto r = decoder.Next();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (!r->has_value()) break;
    got.push_back(std::move((*r)->payload));
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], PgbenchPayload(1));
  EXPECT_TRUE(got[1] == big);
  EXPECT_EQ(got[2], PgbenchPayload(2));
}

// Found by tests/fuzz/frame_fuzz: a compressed frame that fails to
// decompress, then a valid plain frame. The decoder used to return the plain
// frame after the error; now the error sticks, as FrameReader's do.
TEST(FrameCodecTest, AFailedDecompressionIsStickyEvenForALaterPlainFrame) {
  const std::string garbage = "\x28\xb5\x2f\xfd not a zstd frame at all";
  std::string wire;
  AppendFrame(FrameType::kData, kFrameCompressed, 100, AsBytes(garbage), &wire);
  std::string heartbeat;
  EncodeHeartbeat({1, Lsn(0x10), Position{1, Lsn(0x10)}}, &heartbeat);
  AppendFrame(FrameType::kHeartbeat, 0, static_cast<uint32_t>(heartbeat.size()), AsBytes(heartbeat),
              &wire);
  FrameDecoder decoder;
  decoder.Feed(AsBytes(wire));
  auto first = decoder.Next();
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), Code::kCorruption) << first.status().ToString();
  EXPECT_NE(first.status().message().find("stream offset 0"), std::string::npos)
      << first.status().ToString();
  auto second = decoder.Next();
  ASSERT_FALSE(second.ok()) << "the plain heartbeat after a broken zstd stream was returned";
  EXPECT_EQ(second.status().message(), first.status().message());
}

}  // namespace
}  // namespace geosync
