// What Capture delivers for every built-in type family: PostgreSQL's text
// form under capture's session settings (TimeZone=UTC, DateStyle=ISO,
// extra_float_digits=3), NULLs, TOASTed values, generated columns, and which
// relation a partitioned table's changes name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "tests/support/capture_harness.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

using CaptureTypesTest = CaptureClusterTest;

struct TypeCase {
  std::string type;
  std::string literal;   // SQL expression inserted
  std::string expected;  // the text the sink must see
};

// Expected texts are written out, not read back from the server, so that
// the test also pins the session settings capture uses.
const std::vector<TypeCase>& TypeCases() {
  static const std::vector<TypeCase> cases = {
      {"smallint", "-32768", "-32768"},
      {"bigint", "9223372036854775807", "9223372036854775807"},
      {"numeric", "'12345678901234567890.123456789'", "12345678901234567890.123456789"},
      {"numeric(10,3)", "'1.5'", "1.500"},
      {"numeric", "'NaN'", "NaN"},
      {"real", "'1.1'", "1.1"},
      {"double precision", "1.0/3", "0.3333333333333333"},
      {"double precision", "'-Infinity'", "-Infinity"},
      {"boolean", "true", "t"},
      {"text", "E'h\\u00e9llo \"w\\u00f6rld\"\\n\\t\\\\ it''s'",
       "h\u00e9llo \"w\u00f6rld\"\n\t\\ it's"},
      {"varchar(5)", "'abc'", "abc"},
      {"char(4)", "'ab'", "ab  "},
      {"bytea", "'\\xdeadbeef00'::bytea", "\\xdeadbeef00"},
      {"int[]", "'{1,2,NULL,4}'", "{1,2,NULL,4}"},
      {"int[]", "'{{1,2},{3,4}}'", "{{1,2},{3,4}}"},
      {"text[]", "ARRAY['a b', 'c,d', NULL, '\"q\"']", "{\"a b\",\"c,d\",NULL,\"\\\"q\\\"\"}"},
      {"pair", "ROW(1, 'x y')", "(1,\"x y\")"},
      {"pair[]", "ARRAY[ROW(1, 'a')::pair, NULL]", "{\"(1,a)\",NULL}"},
      {"int4range", "'[1,10)'", "[1,10)"},
      {"numrange", "'(1.5,2.5]'", "(1.5,2.5]"},
      {"tstzrange", "'[2024-01-01 00:00+02,2024-02-01 00:00+00)'",
       "[\"2023-12-31 22:00:00+00\",\"2024-02-01 00:00:00+00\")"},
      {"int4multirange", "'{[1,3),[5,7)}'", "{[1,3),[5,7)}"},
      {"json", "'{\"b\": 1,  \"a\": [1,2]}'", "{\"b\": 1,  \"a\": [1,2]}"},
      {"jsonb", "'{\"b\": 1,  \"a\": [1,2]}'", "{\"a\": [1, 2], \"b\": 1}"},
      {"date", "'2024-02-29'", "2024-02-29"},
      {"time", "'23:59:59.999999'", "23:59:59.999999"},
      {"timetz", "'12:00:00+05:30'", "12:00:00+05:30"},
      {"timestamp", "'2024-02-29 12:34:56.789012'", "2024-02-29 12:34:56.789012"},
      {"timestamptz", "'2024-02-29 12:34:56.789012+05:30'", "2024-02-29 07:04:56.789012+00"},
      {"timestamptz", "'infinity'", "infinity"},
      {"interval", "'1 year 2 months 3 days 04:05:06.5'", "1 year 2 mons 3 days 04:05:06.5"},
      {"uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
      {"inet", "'192.168.1.5/24'", "192.168.1.5/24"},
      {"inet", "'::1'", "::1"},
      {"cidr", "'10.1.0.0/16'", "10.1.0.0/16"},
      {"macaddr", "'08:00:2B:01:02:03'", "08:00:2b:01:02:03"},
      {"mood", "'happy'", "happy"},
      {"posint", "42", "42"},
      {"bit(4)", "B'1010'", "1010"},
      {"point", "'(1.5,2)'", "(1.5,2)"},
      {"tsvector", "'b a a'", "'a' 'b'"},
      {"oid", "4294967295", "4294967295"},
  };
  return cases;
}

TEST_F(CaptureTypesTest, EveryBuiltinTypeFamilyArrivesAsItsTextForm) {
  auto& cap = StartCapture(Options());
  pg_->Exec(
      "CREATE TYPE pair AS (a int, b text); CREATE TYPE mood AS ENUM ('sad', 'happy'); "
      "CREATE DOMAIN posint AS int CHECK (VALUE > 0)");
  std::string columns = "id int PRIMARY KEY";
  std::string values = "1";
  std::string nulls = "2";
  const auto& cases = TypeCases();
  for (size_t i = 0; i < cases.size(); ++i) {
    columns += fmt::format(", c{} {}", i, cases[i].type);
    values += ", " + cases[i].literal;
    nulls += ", NULL";
  }
  pg_->Exec(fmt::format("CREATE TABLE types ({})", columns));
  pg_->Exec(fmt::format("INSERT INTO types VALUES ({})", values));
  pg_->Exec(fmt::format("INSERT INTO types VALUES ({})", nulls));
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 2u);
  Relation rel = txns[0].Relations().at(0);
  ASSERT_EQ(rel.columns.size(), cases.size() + 1);
  const Tuple row = txns[0].Rows().at(0).new_tuple;
  ASSERT_EQ(row.size(), cases.size() + 1);
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(row[i + 1], Text(cases[i].expected))
        << cases[i].type << " " << cases[i].literal << " arrives as its text form";
  }
  const Tuple null_row = txns[1].Rows().at(0).new_tuple;
  for (size_t i = 1; i < null_row.size(); ++i) {
    EXPECT_EQ(null_row[i].kind, DatumKind::kNull) << cases[i - 1].type << " NULL stays NULL";
  }
  // Money's text depends on lc_monetary: the same as the server's own output.
  pg_->Exec("CREATE TABLE m (id int PRIMARY KEY, v money)");
  pg_->Exec("INSERT INTO m VALUES (1, '1234567.891')");
  auto money = Collect(cap);
  ASSERT_EQ(money.size(), 1u);
  EXPECT_EQ(money[0].Rows().at(0).new_tuple.at(1), Text(pg_->QueryValue("SELECT v::text FROM m")));
}

TEST_F(CaptureTypesTest, GeneratedColumnsAreOmittedFromRelationAndTuples) {
  auto& cap = StartCapture(Options());
  pg_->Exec(
      "CREATE TABLE g (id int PRIMARY KEY, twice int GENERATED ALWAYS AS (id * 2) STORED, "
      "v text)");
  pg_->Exec("INSERT INTO g (id, v) VALUES (21, 'x')");
  EXPECT_EQ(pg_->QueryValue("SELECT twice FROM g"), "42") << "the primary computed the column";
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 1u);
  Relation rel = txns[0].Relations().at(0);
  ASSERT_EQ(rel.columns.size(), 2u) << "PostgreSQL 15's pgoutput leaves generated columns out";
  EXPECT_EQ(rel.columns[0].name, "id");
  EXPECT_EQ(rel.columns[1].name, "v");
  EXPECT_THAT(txns[0].Rows().at(0).new_tuple, ElementsAre(Text("21"), Text("x")));
}

TEST_F(CaptureTypesTest, ToastedValueArrivesWholeAndUnchangedOnUpdateIsMarked) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE docs (id int PRIMARY KEY, body text, note text)");
  pg_->Exec(
      "INSERT INTO docs SELECT 1, string_agg(md5(random()::text), ''), 'n' "
      "FROM generate_series(1, 32768)");
  ASSERT_EQ(pg_->QueryValue("SELECT length(body) FROM docs"), "1048576");
  const std::string toast =
      pg_->QueryValue("SELECT reltoastrelid::regclass FROM pg_class WHERE relname = 'docs'");
  ASSERT_GT(std::stoi(pg_->QueryValue("SELECT count(*) FROM " + toast)), 100)
      << "the value is stored out of line, in TOAST chunks";
  const std::string md5 = pg_->QueryValue("SELECT md5(body) FROM docs");
  pg_->Exec("UPDATE docs SET note = 'changed'");
  pg_->Exec("UPDATE docs SET body = 'small now'");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 3u);
  const Datum body = txns[0].Rows().at(0).new_tuple.at(1);
  ASSERT_EQ(body.kind, DatumKind::kText);
  EXPECT_EQ(body.value.size(), 1048576u) << "the whole 1 MB value arrives";
  EXPECT_EQ(pg_->QueryValue(fmt::format("SELECT md5('{}')", body.value)), md5) << "byte for byte";
  RowChange upd = txns[1].Rows().at(0);
  EXPECT_THAT(upd.new_tuple,
              ElementsAre(Text("1"), Datum{DatumKind::kUnchangedToast, ""}, Text("changed")))
      << "an update that leaves the TOASTed value alone does not resend it";
  EXPECT_THAT(txns[2].Rows().at(0).new_tuple,
              ElementsAre(Text("1"), Text("small now"), Text("changed")));
}

// publish_via_partition_root decides whether changes name the root or the leaf.
TEST_F(CaptureTypesTest, PartitionChangesNameRootOrLeafPerPublicationOption) {
  pg_->Exec(
      "CREATE TABLE parted (id int, region text, PRIMARY KEY (id, region)) "
      "PARTITION BY LIST (region); "
      "CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu'); "
      "CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us'); "
      "CREATE PUBLICATION pub_root FOR TABLE parted WITH (publish_via_partition_root = true); "
      "CREATE PUBLICATION pub_leaf FOR TABLE parted WITH (publish_via_partition_root = false)");
  CaptureOptions root = Options("slot_root");
  root.publication = "pub_root";
  root.create_publication = false;
  CaptureOptions leaf = Options("slot_leaf");
  leaf.publication = "pub_leaf";
  leaf.create_publication = false;
  auto& via_root = StartCapture(root);
  auto& via_leaf = StartCapture(leaf);
  pg_->Exec("INSERT INTO parted VALUES (1, 'eu'), (2, 'us')");
  pg_->Exec("UPDATE parted SET region = 'us' WHERE id = 1");
  auto names = [](const RecordedTxn& t) {
    std::vector<std::string> out;
    for (const auto& r : t.Relations()) out.push_back(r.relname);
    return out;
  };
  auto ops = [](const RecordedTxn& t) {
    std::vector<RowOp> out;
    for (const auto& c : t.Rows()) out.push_back(c.op);
    return out;
  };
  auto r = Collect(via_root);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_THAT(names(r[0]), ElementsAre("parted"))
      << "root publication: changes name the root, described once per transaction";
  EXPECT_EQ(r[0].Rows().size(), 2u);
  EXPECT_THAT(names(r[1]), ElementsAre("parted"));
  EXPECT_THAT(ops(r[1]), ElementsAre(RowOp::kDelete, RowOp::kInsert))
      << "PostgreSQL 15 sends a cross-partition move as a delete and an insert, both of the root";
  auto l = Collect(via_leaf);
  ASSERT_EQ(l.size(), 2u);
  EXPECT_THAT(names(l[0]), ElementsAre("parted_eu", "parted_us"))
      << "leaf publication: changes name each partition";
  EXPECT_THAT(ops(l[1]), ElementsAre(RowOp::kDelete, RowOp::kInsert))
      << "a cross-partition move is a delete from one leaf and an insert into the other";
  EXPECT_THAT(names(l[1]), ElementsAre("parted_eu", "parted_us"));
}

TEST_F(CaptureTypesTest, MissingPublicationIsReportedNotCreated) {
  CaptureOptions o = Options("slot_x");
  o.publication = "no_such_pub";
  o.create_publication = false;
  o.max_attempts = 1;
  CaptureHarness cap(o);
  cap.Start();
  ASSERT_TRUE(WaitFor([&] { return cap.Finished().has_value(); }, 30s, "capture gives up"));
  Status st = *cap.Finished();
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();
  EXPECT_THAT(st.message(), ::testing::HasSubstr("no_such_pub"));
}

}  // namespace
}  // namespace geosync::testing
