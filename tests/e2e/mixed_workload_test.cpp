// A mixed workload through the whole pipeline: every built-in type family,
// REPLICA IDENTITY FULL, TOAST, truncate, sequences and DDL in the middle of
// the stream. The replica must end identical to the primary, row by row.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "tests/support/deployment.h"
#include "tests/support/site.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class MixedWorkloadE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.replicas = {"dublin"}});
    primary_ = &d.Primary();
    replica_ = &d.Pg("dublin");
    d.AddSource();
    d.AddReplica("dublin");
    d.StartAll();
  }
  void ExpectIdentical() {
    EXPECT_EQ(deploy().CatchUpAndCompare("dublin", 120s), "");
    // The primary is quiet here: the next sequence snapshot brings the values.
    EXPECT_EQ(WaitSequencesEqual(*primary_, *replica_, 30s), "");
  }

  PgCluster* primary_ = nullptr;
  PgCluster* replica_ = nullptr;
};

TEST_F(MixedWorkloadE2E, EveryTypeFamilyAndMidStreamDdlArriveIdentical) {
  primary_->Exec(R"sql(
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TYPE pair AS (a int, b text);
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TABLE types (
      id bigserial PRIMARY KEY,
      n numeric(20,6), m money, t text, b bytea, arr int[], tarr text[],
      comp pair, r int4range, tsr tstzrange, j json, jb jsonb,
      ts timestamp, tstz timestamptz, iv interval, d date, tm time,
      u uuid, ip inet, net cidr, e mood, dom posint, f8 float8, f4 float4,
      bo boolean, ch char(3), vc varchar(10),
      gen bigint GENERATED ALWAYS AS (id * 2) STORED)
  )sql");
  primary_->Exec(R"sql(
    INSERT INTO types (n, m, t, b, arr, tarr, comp, r, tsr, j, jb, ts, tstz, iv, d, tm, u, ip, net,
                       e, dom, f8, f4, bo, ch, vc)
    SELECT i * 1.000001, i, 'text ' || i || ' ''quoted'' \ back', decode(md5(i::text), 'hex'),
           ARRAY[i, i + 1, NULL], ARRAY['a,b', 'c"d', NULL], ROW(i, 'x' || i)::pair,
           int4range(i, i + 10), tstzrange('2026-01-01', '2026-12-31'),
           json_build_object('k', i, 'nested', json_build_array(1, 'two', NULL)),
           jsonb_build_object('k', i), '2026-11-27 23:09:48.123456'::timestamp + i * interval '1 min',
           '2026-11-27 23:09:48.123456+02'::timestamptz, interval '1 day 2 hours 3.5 seconds' * i,
           date '2026-11-27' + i, time '12:34:56.789', md5(i::text)::uuid, '10.1.2.3/24',
           '192.168.0.0/16', (ARRAY['sad','ok','happy']::mood[])[i % 3 + 1], i + 1,
           1.0 / 3 * i, 0.1 * i, i % 2 = 0, 'ab', 'v' || i
    FROM generate_series(1, 200) i;
    INSERT INTO types (t) VALUES (NULL);
  )sql");
  // The rest of the built-in families PostgreSQL's own
  // src/test/subscription/t/002_types.pl covers: geometric, bit strings,
  // xml, text search, MAC addresses, multiranges, arrays of several
  // dimensions and of enums, composites and domains, and the odd scalars.
  primary_->Exec(R"sql(
    CREATE TABLE types2 (
      id int PRIMARY KEY,
      pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
      bt bit(8), vb varbit(16), x xml, tv tsvector, tq tsquery,
      mac macaddr, mac8 macaddr8, imr int4multirange, nmr nummultirange, dr daterange,
      nr numrange, i8r int8range, tsr tsrange,
      i2 int2, i8 int8, c1 "char", nm name, lsn pg_lsn, oi oid, jp jsonpath, bpc bpchar,
      arr2 int[][], earr mood[], carr pair[], darr posint[], ptarr point[], tsvarr tsvector[])
  )sql");
  primary_->Exec(R"sql(
    INSERT INTO types2
    SELECT i, point(i, -i), line(point(0, 0), point(i, 1)), lseg(point(0, i), point(1, i)),
           box(point(0, 0), point(i, i)), path(polygon(box(point(0, 0), point(i, 2)))),
           polygon(box(point(i, 0), point(i + 1, 1))), circle(point(i, i), i + 0.5),
           (i % 256)::bit(8), (i * 7)::bit(16)::varbit(16),
           xmlparse(content '<bet id="' || i || '">a &amp; b</bet>'),
           to_tsvector('english', 'the quick brown fox ' || i), to_tsquery('english', 'fox & ' || i),
           ('08:00:2b:01:02:' || lpad(to_hex(i % 256), 2, '0'))::macaddr,
           ('08:00:2b:01:02:03:04:' || lpad(to_hex(i % 256), 2, '0'))::macaddr8,
           int4multirange(int4range(1, i + 2), int4range(i + 10, i + 20)),
           nummultirange(numrange(0.5, i + 0.5)), daterange(date '2026-01-01', date '2026-01-01' + i),
           numrange(i, i * 2 + 1, '[]'), int8range(i, NULL), tsrange('2026-01-01', NULL),
           (i % 30000)::int2, i::int8 << 40, chr(65 + i % 26)::"char", ('name_' || i)::name,
           (i || '/' || to_hex(i * 4096))::pg_lsn, (i + 100)::oid, ('$.a[' || i || ']')::jsonpath,
           'bp' || i, ARRAY[[i, i + 1], [i + 2, NULL]], ARRAY['sad', 'happy']::mood[],
           ARRAY[ROW(i, 'p')::pair, ROW(NULL, NULL)::pair], ARRAY[i + 1]::posint[],
           ARRAY[point(i, 0), point(0, i)], ARRAY[to_tsvector('simple', 'a b ' || i)]
    FROM generate_series(1, 100) i;
    INSERT INTO types2 (id) VALUES (0);
    UPDATE types2 SET pt = point(-1, -1), x = '<changed/>', imr = '{}', bt = B'11111111'
      WHERE id % 5 = 0;
    DELETE FROM types2 WHERE id % 9 = 0;
  )sql");
  // A large TOASTed value, then an update that leaves it unchanged.
  primary_->Exec("CREATE TABLE docs (id int PRIMARY KEY, body text, version int)");
  primary_->Exec(
      "INSERT INTO docs SELECT 1, string_agg(md5(g::text), '') , 1 FROM generate_series(1, 20000) "
      "g");
  primary_->Exec("UPDATE docs SET version = 2 WHERE id = 1");
  // REPLICA IDENTITY FULL on a table without a key, with duplicates.
  primary_->Exec("CREATE TABLE events (kind text, payload jsonb)");
  primary_->Exec("ALTER TABLE events REPLICA IDENTITY FULL");
  primary_->Exec("INSERT INTO events VALUES ('a', '{\"x\":1}'), ('a', '{\"x\":1}'), ('b', NULL)");
  primary_->Exec("UPDATE events SET kind = 'c' WHERE payload IS NULL");
  primary_->Exec("DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE kind = 'a')");
  // Updates, key changes and deletes.
  primary_->Exec(
      "UPDATE types SET t = t || ' updated', jb = jb || '{\"u\": true}' WHERE id % 7 = 0");
  primary_->Exec("UPDATE types SET id = id + 1000 WHERE id = 5");
  primary_->Exec("DELETE FROM types WHERE id % 11 = 0");
  // DDL in the middle of the stream, in a transaction with data.
  primary_->Exec(
      "BEGIN; ALTER TABLE types ADD COLUMN extra text DEFAULT 'x'; "
      "UPDATE types SET extra = 'set ' || id WHERE id < 20; COMMIT;");
  primary_->Exec("ALTER TABLE types DROP COLUMN tarr");
  primary_->Exec("INSERT INTO types (t, extra) VALUES ('after ddl', 'y')");
  // Truncate with restart identity, then refill.
  primary_->Exec("CREATE TABLE scratch (id serial PRIMARY KEY, v int)");
  primary_->Exec("INSERT INTO scratch (v) SELECT generate_series(1, 50)");
  primary_->Exec("TRUNCATE scratch RESTART IDENTITY");
  primary_->Exec("INSERT INTO scratch (v) VALUES (7)");
  ExpectIdentical();
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM types WHERE gen = id * 2"),
            primary_->QueryValue("SELECT count(*) FROM types"))
      << "generated columns are computed on the replica";
  EXPECT_EQ(replica_->QueryValue("SELECT length(body) FROM docs WHERE version = 2"), "640000")
      << "the unchanged TOASTed value survived the update";
}

}  // namespace
}  // namespace geosync::testing
