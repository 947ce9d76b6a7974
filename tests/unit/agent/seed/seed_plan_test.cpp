// Seed planning and progress, without PostgreSQL: page ranges cover a table
// without gap or overlap, the last one open-ended; progress and ETA figures.
#include <gtest/gtest.h>

#include "agent/seed/pg_dump.h"
#include "agent/seed/seed_progress.h"
#include "agent/seed/seed_server.h"

namespace geosync::seed {
namespace {

TEST(SeedPlanTest, SmallTableIsOneOpenEndedChunk) {
  auto chunks = PlanChunks(8192 * 10, 8192, 32ull << 20);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].start_page, 0u);
  EXPECT_EQ(chunks[0].end_page, 0u) << "open-ended: pages added later are copied too";
  EXPECT_EQ(PlanChunks(0, 8192, 32ull << 20).size(), 1u) << "an empty table still gets a chunk";
}

TEST(SeedPlanTest, BigTableChunksAreContiguousAndTheLastIsOpen) {
  const uint64_t pages = 10000, block = 8192, chunk = 8ull << 20;  // 1024 pages per chunk
  auto chunks = PlanChunks(pages * block, block, chunk);
  ASSERT_EQ(chunks.size(), 10u);
  uint64_t next = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].start_page, next) << "chunk " << i << " starts where the last ended";
    next = chunks[i].end_page;
    if (i + 1 < chunks.size()) {
      EXPECT_EQ(chunks[i].end_page - chunks[i].start_page, 1024u);
    }
  }
  EXPECT_EQ(chunks.back().start_page, 9216u);
  EXPECT_EQ(chunks.back().end_page, 0u);
}

TEST(SeedPlanTest, MetaCommandLinesAreStrippedFromADump) {
  std::string dump = "\\restrict abc\nSET x = 1;\nCREATE TABLE t (a int);\n\\unrestrict abc\n";
  EXPECT_EQ(StripMetaCommands(dump), "SET x = 1;\nCREATE TABLE t (a int);\n");
}

TEST(SeedPlanTest, TheSourcesWriteGuardTriggersAreNotCopied) {
  std::string dump =
      "CREATE TRIGGER geosync_write_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "
      "public.t FOR EACH STATEMENT WHEN ((pg_postmaster_start_time() IS DISTINCT FROM "
      "'2026-12-02 15:17:32.926669+00'::timestamp with time zone)) EXECUTE FUNCTION "
      "_geosync.refuse_write('2026-12-02T15:17:32.926669Z');\n"
      "CREATE TRIGGER audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f();\n";
  EXPECT_EQ(StripMetaCommands(dump),
            "CREATE TRIGGER audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION "
            "public.f();\n");
}

TEST(SeedProgressTest, CountsRowsAndBytesPerTableAndEstimatesAnEta) {
  SeedManifest m;
  m.consistent = Position{1, Lsn(0x1000)};
  SeedTable a;
  a.schema = "public";
  a.name = "a";
  a.bytes = 1000;
  a.rows_estimate = 100;
  a.chunks = {{0, 0}};
  SeedTable b = a;
  b.name = "b";
  b.chunks = {{0, 10}, {10, 0}};
  m.tables = {a, b};
  SeedProgress p;
  p.SetState("in_progress");
  p.Begin(m);
  p.SetPhase("copying");
  p.Add(0, 100, 900);
  p.ChunkDone(0);
  p.Add(1, 50, 450);
  p.ChunkDone(1);
  admin::SeedSnapshot s = p.Snapshot();
  EXPECT_EQ(s.rows_copied, 150u);
  EXPECT_EQ(s.bytes_copied, 1350u);
  EXPECT_EQ(s.bytes_total, 2000u);
  ASSERT_EQ(s.tables.size(), 2u);
  EXPECT_EQ(s.tables[0].table, "public.a");
  EXPECT_EQ(s.tables[1].chunks_done, 1);
  EXPECT_EQ(s.tables[1].chunks_total, 2);
  EXPECT_EQ(s.position, m.consistent);
  ASSERT_TRUE(s.eta_s.has_value()) << "an ETA once rows were copied";
  EXPECT_GE(*s.eta_s, 0.0);
  ASSERT_TRUE(s.tables[0].eta_s.has_value());
  EXPECT_EQ(*s.tables[0].eta_s, 0.0) << "a finished table has nothing left";
}

}  // namespace
}  // namespace geosync::seed
