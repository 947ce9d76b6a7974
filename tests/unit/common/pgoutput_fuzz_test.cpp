// Deterministic mutation fuzzing of the pgoutput decoder (and the replication
// CopyData parsers): valid encoded messages are flipped, truncated, extended
// and have length fields tampered with, and random buffers are thrown in. Every
// input must decode or fail with a Protocol status; under ASan+UBSan this also
// proves no out-of-bounds read and no undefined behaviour. Set
// GEOSYNC_FUZZ_SEED to replay a reported seed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/pgoutput.h"
#include "common/replication_protocol.h"

namespace geosync {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr PgOutputOptions kOptionSets[] = {
    {1, false, false}, {1, true, false}, {2, false, false}, {2, true, true}, {2, false, true}};

uint64_t Seed() {
  if (const char* env = std::getenv("GEOSYNC_FUZZ_SEED")) return std::strtoull(env, nullptr, 0);
  return 0x9e05'7c2d'1b3a'4f61ULL;
}

std::string Hex(const Bytes& b) {
  std::ostringstream out;
  out << std::hex;
  for (uint8_t c : b) out << (c < 16 ? "0" : "") << static_cast<int>(c) << ' ';
  return out.str();
}

Datum T(std::string v) { return {DatumKind::kText, std::move(v)}; }
Datum B(std::string v) { return {DatumKind::kBinary, std::move(v)}; }
Datum N() { return {DatumKind::kNull, ""}; }
Datum U() { return {DatumKind::kUnchangedToast, ""}; }

struct Seedling {
  Bytes bytes;
  PgOutputOptions opts;
};

// One valid message of every type, encoded under the options it belongs to.
std::vector<Seedling> Corpus() {
  const PgOutputOptions v1{1, false, false}, v2{2, false, false}, streamed{2, true, true};
  Relation rel{16384, "public", "users", 'd', {{"id", 23, -1, true}, {"name", 25, -1, false}}};
  std::vector<std::pair<PgOutputMessage, PgOutputOptions>> m = {
      {{BeginEvent{742, Lsn(0x16B374D848), 733'000'000'000'000}, {}}, v1},
      {{CommitEvent{0, Lsn(0x100), Lsn(0x128), 99}, {}}, v1},
      {{OriginMessage{Lsn(0x10), "pg_16385"}, {}}, v1},
      {{rel, {}}, v1},
      {{rel, 1000}, streamed},
      {{TypeMessage{90001, "public", "mood"}, {}}, v1},
      {{TypeMessage{90001, "", "x"}, 7}, streamed},
      {{RowChange{RowOp::kInsert, 16384, 0, {}, {T("7"), N(), T("hello world")}}, {}}, v1},
      {{RowChange{RowOp::kInsert, 16384, 0, {}, {B(std::string("\0\1", 2)), T("")}}, 3}, streamed},
      {{RowChange{RowOp::kUpdate, 16384, 'K', {T("7"), N()}, {T("8"), U()}}, {}}, v1},
      {{RowChange{RowOp::kUpdate, 16384, 'O', {T("7"), T("a")}, {T("7"), T("b")}}, 9}, streamed},
      {{RowChange{RowOp::kUpdate, 16384, 0, {}, {T("7"), U()}}, {}}, v2},
      {{RowChange{RowOp::kDelete, 16384, 'K', {T("7"), N()}, {}}, {}}, v1},
      {{RowChange{RowOp::kDelete, 16384, 'O', {T("7"), T("a")}, {}}, 4}, streamed},
      {{TruncateEvent{true, true, {16384, 16390, 3}}, {}}, v1},
      {{TruncateEvent{false, true, {1}}, 5}, streamed},
      {{MessageEvent{true, Lsn(0x99), "geosync.ddl", "CREATE TABLE t (a int)"}, {}}, v1},
      {{MessageEvent{false, Lsn(0x99), "geosync.heartbeat", ""}, {}}, v2},
      {{MessageEvent{true, Lsn(0x99), "geosync.marker", "m"}, 6}, streamed},
      {{StreamStart{1000, true}, {}}, v2},
      {{StreamStop{}, {}}, streamed},
      {{StreamCommit{1000, Lsn(0x600), Lsn(0x630), 12345}, {}}, v2},
      {{StreamAbort{1000, 1003}, {}}, v2},
  };
  std::vector<Seedling> corpus;
  for (const auto& [message, opts] : m) corpus.push_back({EncodePgOutput(message, opts), opts});
  return corpus;
}

class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed) {}

  size_t Below(size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }
  uint8_t Byte() { return static_cast<uint8_t>(rng_()); }

  Bytes Mutate(Bytes b) {
    switch (Below(5)) {
      case 0:  // flip bytes
        for (size_t n = 1 + Below(4); n > 0 && !b.empty(); --n)
          b[Below(b.size())] ^= 1 + Below(255);
        break;
      case 1:  // truncate
        b.resize(Below(b.size() + 1));
        break;
      case 2: {  // insert bytes
        size_t at = Below(b.size() + 1);
        Bytes extra(1 + Below(8));
        for (uint8_t& c : extra) c = Byte();
        b.insert(b.begin() + static_cast<ptrdiff_t>(at), extra.begin(), extra.end());
        break;
      }
      case 3:  // tamper with a (possible) Int16/Int32 length or count field
        TamperLength(&b);
        break;
      default:  // drop a span of bytes
        if (!b.empty()) {
          size_t at = Below(b.size());
          size_t n = 1 + Below(std::min<size_t>(8, b.size() - at));
          b.erase(b.begin() + static_cast<ptrdiff_t>(at),
                  b.begin() + static_cast<ptrdiff_t>(at + n));
        }
        break;
    }
    return b;
  }

  Bytes Random() {
    Bytes b(Below(64));
    for (uint8_t& c : b) c = Byte();
    // Half the time, start with a real type byte so the body decoders are reached.
    static constexpr char kTypes[] = "BCORYIUDTMSEcA";
    if (!b.empty() && Below(2) == 0) b[0] = static_cast<uint8_t>(kTypes[Below(sizeof(kTypes) - 1)]);
    return b;
  }

 private:
  void TamperLength(Bytes* b) {
    static constexpr uint32_t kInteresting[] = {
        0,      1,      2,          0x7F,       0x80,       0xFF,       0x7FFF,
        0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x00010000};
    size_t width = Below(2) == 0 ? 2 : 4;
    if (b->size() < width + 1) return;
    size_t at = 1 + Below(b->size() - width);
    uint32_t v = kInteresting[Below(std::size(kInteresting))];
    if (Below(4) == 0) {  // nudge the existing value by one instead
      uint32_t old = 0;
      for (size_t i = 0; i < width; ++i) old = (old << 8) | (*b)[at + i];
      v = Below(2) == 0 ? old + 1 : old - 1;
    }
    for (size_t i = 0; i < width; ++i) {
      (*b)[at + i] = static_cast<uint8_t>(v >> (8 * (width - 1 - i)));
    }
  }

  std::mt19937_64 rng_;
};

// Decodes under `opts`; a success must re-encode to the very same bytes (the
// decoder accepts only canonical input), a failure must be a Protocol error.
testing::AssertionResult DecodesOrRejects(const Bytes& input, const PgOutputOptions& opts,
                                          bool* accepted = nullptr) {
  auto m = DecodePgOutput(input, opts);
  if (accepted != nullptr) *accepted = m.ok();
  if (!m.ok()) {
    if (m.status().code() == Code::kProtocol) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "non-Protocol error: " << m.status().ToString();
  }
  Bytes again = EncodePgOutput(*m, opts);
  if (again != input) {
    return testing::AssertionFailure() << "accepted input re-encodes differently: " << Hex(again);
  }
  return testing::AssertionSuccess();
}

TEST(PgOutputFuzzTest, MutatedAndRandomInputsDecodeOrFailWithProtocolStatus) {
  const uint64_t seed = Seed();
  // Printed up front too: a sanitizer abort ends the process before FAIL() can.
  std::fprintf(stderr, "pgoutput fuzz seed %llu (GEOSYNC_FUZZ_SEED replays it)\n",
               static_cast<unsigned long long>(seed));
  Fuzzer fuzz(seed);
  const std::vector<Seedling> corpus = Corpus();
  constexpr int kMutations = 90'000;
  constexpr int kRandom = 30'000;
  size_t accepted = 0;
  for (int i = 0; i < kMutations + kRandom; ++i) {
    Bytes input;
    PgOutputOptions opts;
    if (i < kMutations) {
      const Seedling& s = corpus[fuzz.Below(corpus.size())];
      input = fuzz.Mutate(s.bytes);
      // Stack a second mutation sometimes; decode mostly under the seed's own options.
      if (fuzz.Below(4) == 0) input = fuzz.Mutate(std::move(input));
      opts = fuzz.Below(4) == 0 ? kOptionSets[fuzz.Below(std::size(kOptionSets))] : s.opts;
    } else {
      input = fuzz.Random();
      opts = kOptionSets[fuzz.Below(std::size(kOptionSets))];
    }
    bool ok = false;
    auto verdict = DecodesOrRejects(input, opts, &ok);
    if (!verdict) {
      FAIL() << "seed " << seed << " (rerun with GEOSYNC_FUZZ_SEED=" << seed << "), input " << i
             << " under protocol " << opts.protocol_version << " binary=" << opts.binary
             << " streamed=" << opts.in_streamed_block << ": " << verdict.message()
             << "\ninput: " << Hex(input);
    }
    if (ok) ++accepted;
  }
  // Some mutations (a flipped value byte) leave valid messages: the loop must
  // have reached the success path as well as the error paths.
  EXPECT_GT(accepted, 100u) << "seed " << seed;
}

TEST(PgOutputFuzzTest, EveryCorpusMessageSurvivesEverySingleByteValue) {
  // Exhaustive over one position at a time: 256 values at every offset.
  for (const Seedling& s : Corpus()) {
    for (size_t at = 0; at < s.bytes.size(); ++at) {
      Bytes b = s.bytes;
      for (int v = 0; v < 256; ++v) {
        b[at] = static_cast<uint8_t>(v);
        ASSERT_TRUE(DecodesOrRejects(b, s.opts)) << "offset " << at << " value " << v;
      }
    }
  }
}

TEST(ReplicationProtocolFuzzTest, RandomCopyDataNeverBreaksTheParsers) {
  const uint64_t seed = Seed();
  std::mt19937_64 rng(seed);
  static constexpr uint8_t kTypes[] = {'w', 'k', 'r', 'h'};
  for (int i = 0; i < 20'000; ++i) {
    Bytes b(rng() % 48);
    for (uint8_t& c : b) c = static_cast<uint8_t>(rng());
    if (!b.empty() && rng() % 2 == 0) b[0] = kTypes[rng() % 4];
    auto server = ParseServerReplicationMessage(b);
    auto standby = ParseStandbyStatusUpdate(b);
    if ((!server.ok() && server.status().code() != Code::kProtocol) ||
        (!standby.ok() && standby.status().code() != Code::kProtocol)) {
      FAIL() << "seed " << seed << " input " << i << ": " << Hex(b);
    }
    if (server.ok() && std::holds_alternative<XLogData>(*server)) {
      const XLogData& d = std::get<XLogData>(*server);
      ASSERT_EQ(d.payload.size() + kXLogDataHeaderSize, b.size()) << "seed " << seed;
    }
  }
}

}  // namespace
}  // namespace geosync
