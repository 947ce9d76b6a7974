// pg_dump's command line never carries the password of postgres.dsn: every
// user of the host can read a process's argv (ps, /proc/PID/cmdline).
#include "agent/seed/pg_dump.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace geosync::seed {
namespace {

const std::vector<std::pair<std::string, std::string>> kTables = {{"public", "accounts"}};

bool ArgvMentions(const ChildCommand& c, const std::string& needle) {
  return std::any_of(c.argv.begin(), c.argv.end(),
                     [&](const std::string& a) { return a.find(needle) != std::string::npos; });
}

TEST(PgDumpCommand, KeywordPasswordGoesToTheEnvironmentNotArgv) {
  auto c = PgDumpCommand("/usr/lib/postgresql/15/bin",
                         "host=10.0.0.5 port=5433 dbname=app user=geosync password=Hunter2-x",
                         "00000003-00000002-1", kTables, "pre-data");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(ArgvMentions(*c, "Hunter2-x"));
  EXPECT_FALSE(ArgvMentions(*c, "password"));
  EXPECT_EQ(c->env, std::vector<std::string>{"PGPASSWORD=Hunter2-x"});
  EXPECT_EQ(c->argv.front(), "/usr/lib/postgresql/15/bin/pg_dump");
  EXPECT_TRUE(c->argv.back().starts_with("--dbname=")) << c->argv.back();
  for (const char* kv : {"host='10.0.0.5'", "port='5433'", "dbname='app'", "user='geosync'"}) {
    EXPECT_NE(c->argv.back().find(kv), std::string::npos) << c->argv.back();
  }
  EXPECT_TRUE(ArgvMentions(*c, "--snapshot=00000003-00000002-1"));
  EXPECT_TRUE(ArgvMentions(*c, "--table=\"public\".\"accounts\""));
}

TEST(PgDumpCommand, UriPasswordGoesToTheEnvironmentNotArgv) {
  auto c = PgDumpCommand("/bin", "postgresql://geosync:s%40cret@db.example.com:5432/app", "snap",
                         kTables, "post-data");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(ArgvMentions(*c, "cret"));
  EXPECT_EQ(c->env, std::vector<std::string>{"PGPASSWORD=s@cret"}) << "percent-decoded";
  EXPECT_TRUE(ArgvMentions(*c, "host='db.example.com'"));
}

TEST(PgDumpCommand, QuotedValuesSurviveTheRoundTrip) {
  auto c = SplitConninfoForChild(R"(dbname='it\'s' password='a b\'c' application_name=x\\y)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->env, std::vector<std::string>{"PGPASSWORD=a b'c"});
  ASSERT_EQ(c->argv.size(), 1u);
  EXPECT_EQ(c->argv[0], R"(--dbname=dbname='it\'s' application_name='x\\y')");
}

TEST(PgDumpCommand, NoPasswordNoEnvironment) {
  auto c = SplitConninfoForChild("host=/var/run/postgresql dbname=app");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->env.empty());
}

TEST(PgDumpCommand, UnparsableConninfoIsAnErrorWithoutThePassword) {
  auto c = SplitConninfoForChild("host=x password=Hunter2 bogus_keyword=1");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message().find("Hunter2"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace geosync::seed
