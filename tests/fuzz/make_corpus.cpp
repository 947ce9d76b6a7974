// Writes the seed corpus of every harness in tests/fuzz from a capture of
// real pgoutput messages (capture_pgoutput.sh). The captured messages become
// the Events a source spools, the spool records it writes, the record
// batches and frames it ships; geosync's own records (handshake, seeding)
// are encoded as the agents send them. Usage:
//   make_corpus CAPTURE OUT_DIR
// OUT_DIR gets one subdirectory per harness (tests/fuzz/corpus in the tree).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/spool/segment.h"
#include "common/codec.h"
#include "common/control.h"
#include "common/encoding.h"
#include "common/frame.h"
#include "common/pgoutput.h"
#include "common/record_batch.h"
#include "common/seed_protocol.h"

namespace fs = std::filesystem;
using namespace geosync;

namespace {

using Bytes = std::vector<uint8_t>;

struct Captured {
  int version;
  uint32_t xid;
  Bytes bytes;
};

Bytes FromHex(const std::string& hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

void AppendPiece(std::span<const uint8_t> piece, std::string* out) {
  if (piece.size() > 0xffff) {
    std::cerr << "make_corpus: a " << piece.size() << "-byte piece does not fit fuzz::Pieces\n";
    std::exit(1);
  }
  out->push_back(static_cast<char>(piece.size() & 0xff));
  out->push_back(static_cast<char>((piece.size() >> 8) & 0xff));
  out->append(reinterpret_cast<const char*>(piece.data()), piece.size());
}

class Writer {
 public:
  explicit Writer(fs::path root) : root_(std::move(root)) {}
  void Write(const std::string& harness, const std::string& name, const std::string& bytes) {
    fs::create_directories(root_ / harness);
    std::ofstream(root_ / harness / name, std::ios::binary) << bytes;
    ++counts_[harness];
  }
  void Report() const {
    for (const auto& [harness, n] : counts_) std::cout << harness << ": " << n << " inputs\n";
  }

 private:
  fs::path root_;
  std::map<std::string, int> counts_;
};

std::optional<Event> ToEvent(const PgOutputBody& body) {
  if (auto* b = std::get_if<BeginEvent>(&body)) return *b;
  if (auto* c = std::get_if<CommitEvent>(&body)) return *c;
  if (auto* r = std::get_if<Relation>(&body)) return *r;
  if (auto* r = std::get_if<RowChange>(&body)) return *r;
  if (auto* t = std::get_if<TruncateEvent>(&body)) return *t;
  if (auto* m = std::get_if<MessageEvent>(&body)) return *m;
  return std::nullopt;
}

std::string Name(const char* prefix, size_t i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%03zu", prefix, i);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_corpus CAPTURE OUT_DIR\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "make_corpus: cannot read " << argv[1] << "\n";
    return 1;
  }
  std::vector<Captured> captured;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    Captured c{};
    std::string hex;
    if (!(fields >> c.version >> c.xid >> hex)) continue;
    c.bytes = FromHex(hex);
    captured.push_back(std::move(c));
  }
  Writer out{fs::path(argv[2])};

  // pgoutput: runs of up to 8 messages of one protocol version, each run
  // preceded by the Relation messages seen so far.
  for (int version : {1, 2}) {
    const PgOutputOptions opts{version, false, false};
    const char option_index = version == 1 ? 0 : 2;  // kOptionSets in pgoutput_fuzz.cpp
    std::map<uint32_t, Bytes> relations;
    std::string file(1, option_index);
    size_t in_file = 0, files = 0;
    for (const Captured& c : captured) {
      if (c.version != version) continue;
      if (in_file == 0) {
        for (const auto& [oid, rel] : relations) AppendPiece(rel, &file);
      }
      AppendPiece(c.bytes, &file);
      auto m = DecodePgOutput(c.bytes, opts);
      if (!m.ok()) {
        std::cerr << "make_corpus: captured message does not decode: " << m.status().ToString()
                  << "\n";
        return 1;
      }
      if (auto* rel = std::get_if<Relation>(&m->body)) relations[rel->oid] = c.bytes;
      if (++in_file == 8) {
        out.Write("pgoutput_fuzz", Name(version == 1 ? "v1" : "v2", files++), file);
        file.assign(1, option_index);
        in_file = 0;
      }
    }
    if (in_file > 0) out.Write("pgoutput_fuzz", Name(version == 1 ? "v1" : "v2", files++), file);
  }

  // Events as the source spools them: transactions of protocol 1 messages.
  std::vector<std::vector<Event>> txns;
  std::vector<MessageEvent> messages;
  {
    const PgOutputOptions v1{1, false, false};
    std::vector<Event> current;
    uint32_t xid = 0;
    for (const Captured& c : captured) {
      if (c.version != 1) continue;
      auto m = DecodePgOutput(c.bytes, v1);
      auto event = ToEvent(m->body);
      if (!event) continue;
      if (auto* b = std::get_if<BeginEvent>(&*event)) xid = b->xid;
      if (auto* commit = std::get_if<CommitEvent>(&*event)) commit->xid = xid;
      if (auto* msg = std::get_if<MessageEvent>(&*event)) messages.push_back(*msg);
      current.push_back(std::move(*event));
      if (std::holds_alternative<CommitEvent>(current.back()) ||
          (current.size() == 1 && std::holds_alternative<MessageEvent>(current.back()))) {
        txns.push_back(std::move(current));
        current.clear();
      }
    }
  }

  // Spool records: one unit per transaction (commit LSN from Begin); large
  // transactions cut to their first 12 events to keep seeds small.
  struct Rec {
    uint64_t epoch;
    Lsn lsn;
    uint8_t flags;
    std::string payload;
  };
  std::vector<std::vector<Rec>> units;
  for (const auto& txn : txns) {
    Lsn lsn;
    if (auto* b = std::get_if<BeginEvent>(&txn.front())) lsn = b->final_lsn;
    if (auto* m = std::get_if<MessageEvent>(&txn.front())) lsn = m->lsn;
    std::vector<Rec> unit;
    const size_t n = std::min<size_t>(txn.size(), 12);
    for (size_t i = 0; i < n; ++i) {
      const Event& e = i + 1 == n ? txn.back() : txn[i];
      Rec r{1, lsn, 0, {}};
      if (i == 0) r.flags |= kFirstInUnit;
      if (i + 1 == n) r.flags |= kLastInUnit;
      EncodeEvent(e, &r.payload);
      unit.push_back(std::move(r));
    }
    units.push_back(std::move(unit));
  }
  std::vector<std::string> segments;
  for (size_t u = 0; u < units.size(); u += 3) {
    std::string segment;
    for (size_t k = u; k < std::min(units.size(), u + 3); ++k) {
      for (const Rec& r : units[k]) {
        auto header = EncodeRecordHeader(r.epoch, r.lsn, r.flags, AsBytes(r.payload));
        segment.append(reinterpret_cast<const char*>(header.data()), header.size());
        segment += r.payload;
      }
    }
    segments.push_back(segment);
    out.Write("spool_record_fuzz", Name("segment", segments.size() - 1),
              std::string(1, 0) + segment);
  }
  // A torn tail: the last record cut short, as a crash mid-write leaves it.
  out.Write("spool_record_fuzz", "torn-tail",
            std::string(1, 0) + segments.front().substr(0, segments.front().size() - 7));

  // Record batches: consecutive units through one encoder, as on one
  // connection; frames carry the same batches after a Hello.
  {
    BatchEncoder encoder;
    std::string file;
    std::vector<std::string> batches;
    for (size_t u = 0; u < units.size(); ++u) {
      std::string batch;
      for (const Rec& r : units[u])
        encoder.Append(r.epoch, r.lsn, r.flags, AsBytes(r.payload), &batch);
      batches.push_back(batch);
      AppendPiece(AsBytes(batch), &file);
      if (u % 4 == 3 || u + 1 == units.size()) {
        out.Write("record_batch_fuzz", Name("connection", u / 4), file);
        file.clear();
      }
    }
    for (int level : {0, 1}) {
      std::optional<FrameEncoder> frames(std::in_place, level);
      std::string stream;
      stream.push_back(0);   // checksums are valid already
      stream.push_back(63);  // feed 64 bytes at a time
      std::string control;
      EncodeHelloReply({true, "", "primary", 1, Position{1, Lsn(0x153D6A8)}, {}}, &control);
      (void)frames->Encode(FrameType::kHelloReply, AsBytes(control), &stream);
      for (size_t i = 0; i < batches.size(); ++i) {
        (void)frames->Encode(FrameType::kData, AsBytes(batches[i]), &stream);
        if (i % 4 == 3) {
          control.clear();
          EncodeHeartbeat({1'800'000'000'000'000, Lsn(0x1540000), Position{1, Lsn(0x153FEF8)}},
                          &control);
          (void)frames->Encode(FrameType::kHeartbeat, AsBytes(control), &stream);
          out.Write("frame_fuzz", Name(level ? "zstd" : "plain", i / 4), stream);
          stream.resize(2);
          frames.emplace(level);
        }
      }
    }
  }

  // Handshake records, as a replica and a source send them.
  {
    std::string b(1, 0);
    EncodeHello({kProtocolVersion, "c0ffee-cluster", "dublin", 3, Position{3, Lsn(0x16B374D8)},
                 kHelloAcceptsZstd},
                &b);
    out.Write("control_fuzz", "hello", b);
    b.assign(1, 1);
    EncodeHelloReply({false, "site dublin knows epoch 4, this source is at 3", "primary", 3,
                      Position{}, HelloRefusal::kStaleSource},
                     &b);
    out.Write("control_fuzz", "hello-reply-refused", b);
    b.assign(1, 1);
    EncodeHelloReply({true, "", "primary", 3, Position{3, Lsn(0x16B374D8)}, {}}, &b);
    out.Write("control_fuzz", "hello-reply", b);
    b.assign(1, 2);
    EncodeHeartbeat({1'800'000'000'000'000, Lsn(0x1540000), Position{3, Lsn(0x153FEF8)}}, &b);
    out.Write("control_fuzz", "heartbeat", b);
    b.assign(1, 3);
    EncodeAck({Position{3, Lsn(0x300)}, Position{3, Lsn(0x200)}, Position{3, Lsn(0x100)},
               733'000'000'000'000},
              &b);
    out.Write("control_fuzz", "ack", b);
    b.assign(1, 4);
    EncodeErrorMessage({Code::kFenced, "fenced at epoch 4"}, &b);
    out.Write("control_fuzz", "error", b);
  }

  // Seeding records, for the tables of the capture.
  {
    std::string b(1, 0);
    EncodeSeedRequest({SeedRequestKind::kManifest, "", "", "", {}, 0, 0}, &b);
    out.Write("seed_protocol_fuzz", "request-manifest", b);
    b.assign(1, 0);
    EncodeSeedRequest({SeedRequestKind::kChunk,
                       "00000003-00000002-1",
                       "public",
                       "accounts",
                       {"id", "balance", "owner", "note"},
                       0,
                       128},
                      &b);
    out.Write("seed_protocol_fuzz", "request-chunk", b);
    b.assign(1, 1);
    SeedManifest manifest{
        "00000003-00000002-1",
        Position{1, Lsn(0x153D6A8)},
        "CREATE TABLE public.accounts (id bigint NOT NULL, balance numeric(12,2));",
        "ALTER TABLE ONLY public.accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);",
        {{"public", "accounts", {"id", "balance"}, 8192, 20, {{0, 0}}},
         {"public", "events", {"id", "payload"}, 65536, 302, {{0, 4}, {4, 0}}}},
        {{"public", "events_id_seq", 302, true}}};
    EncodeSeedManifest(manifest, &b);
    out.Write("seed_protocol_fuzz", "manifest", b);
    b.assign(1, 2);
    EncodeSeedData("1\t1.50\towner 1\t\\N\n2\t3.00\towner 2\t\\N\n", &b);
    out.Write("seed_protocol_fuzz", "data", b);
    b.assign(1, 3);
    EncodeSeedChunkEnd({2, 38}, &b);
    out.Write("seed_protocol_fuzz", "chunk-end", b);
    b.assign(1, 4);
    EncodeSeedFinish({false, "COPY public.accounts failed: SQLSTATE 23505"}, &b);
    out.Write("seed_protocol_fuzz", "finish", b);
  }

  // Logical message bodies: the captured ones and the DDL shapes the
  // trigger writes.
  for (size_t i = 0; i < messages.size(); ++i) {
    out.Write("logical_message_fuzz", Name("captured", i), messages[i].content);
  }
  const char* ddl[] = {
      R"json({"sql":"CREATE TABLE t (id int PRIMARY KEY); CREATE INDEX ON t (id)","search_path":"public","role":"app"})json",
      R"json({"sql":"BEGIN; ALTER TABLE t ADD c text DEFAULT 'a;b'; COMMIT;","search_path":"","role":"app"})json",
      R"json({"sql":"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; -- tail","role":"app"})json",
      R"json({"sql":"DO $x$ BEGIN PERFORM 1; END $x$; CREATE ROLE evil SUPERUSER","role":"app"})json",
      R"json({"sql":"/* c */ GRANT SELECT ON t TO reader; SET search_path = x","role":"app"})json",
  };
  for (size_t i = 0; i < std::size(ddl); ++i)
    out.Write("logical_message_fuzz", Name("ddl", i), ddl[i]);

  // Config and topology files: the documented examples.
  for (const char* example : {"source.json", "replica.json"}) {
    std::ifstream f(fs::path(GEOSYNC_SOURCE_DIR) / "docs/examples" / example, std::ios::binary);
    std::stringstream text;
    text << f.rdbuf();
    if (text.str().empty()) {
      std::cerr << "make_corpus: cannot read docs/examples/" << example << "\n";
      return 1;
    }
    out.Write("config_fuzz", example, text.str());
  }
  out.Write("config_fuzz", "topology.json",
            R"({"cluster_id":"c0ffee-cluster","sites":[
  {"name":"primary","admin":"https://127.0.0.1:7001","stream":"127.0.0.1:7000"},
  {"name":"dublin","admin":"https://127.0.0.1:7101"}],
  "etcd":["http://127.0.0.1:2379"]})");
  out.Report();
  return 0;
}
