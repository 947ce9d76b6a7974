// Admin API authentication without a network: the token file's mode and
// length, and what /status and /readyz show to a caller without the token.
#include "agent/admin/admin_auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"

namespace geosync::admin {
namespace {

// What the applier records for a unique violation (daemon.cpp's
// control.error = Status::ToString()): PostgreSQL's DETAIL quotes the row.
constexpr const char* kApplyError =
    "PostgreSQL error 23505: applying xid 7 (commit 0/1A2B3C) to public.accounts: "
    "PostgreSQL error 23505: duplicate key value violates unique constraint \"accounts_pkey\" "
    "(Key (email)=(alice@example.com) already exists.)";

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-token-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/admin.token";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& content, mode_t mode) {
    std::ofstream(path_) << content;
    ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
  }

  std::string dir_, path_;
  const std::string good_ = std::string(64, 'a');
};

TEST_F(TokenFileTest, PrivateFileWithLongTokenIsRead) {
  Write(good_ + "\n", 0600);
  auto t = ReadTokenFile(path_);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, good_);
}

TEST_F(TokenFileTest, WorldReadableFileIsRefusedNamingTheFileAndTheFix) {
  Write(good_ + "\n", 0644);
  auto t = ReadTokenFile(path_);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kConfig);
  EXPECT_NE(t.status().message().find("chmod 600 " + path_), std::string::npos)
      << t.status().message();
  EXPECT_NE(t.status().message().find("0644"), std::string::npos) << t.status().message();
}

TEST_F(TokenFileTest, GroupReadableOrWritableFileIsRefused) {
  for (mode_t mode : {0640, 0620, 0602, 0660}) {
    Write(good_ + "\n", mode);
    EXPECT_FALSE(ReadTokenFile(path_).ok()) << std::oct << mode;
  }
  Write(good_ + "\n", 0400);
  EXPECT_TRUE(ReadTokenFile(path_).ok()) << "read-only for the owner is fine";
}

TEST_F(TokenFileTest, ShortTokenIsRefusedWithHowToMakeOne) {
  Write(std::string(31, 'x') + "\n", 0600);
  auto t = ReadTokenFile(path_, "--token-file");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("openssl rand -hex 32 > " + path_), std::string::npos)
      << t.status().message();
  EXPECT_NE(t.status().message().find("--token-file"), std::string::npos);
  Write(std::string(32, 'x') + "\n", 0600);
  EXPECT_TRUE(ReadTokenFile(path_).ok()) << "32 characters are enough";
}

TEST(TokenMatches, NeedsTheExactBearerToken) {
  const std::string token(40, 't');
  EXPECT_TRUE(TokenMatches("Bearer " + token, token));
  EXPECT_FALSE(TokenMatches("Bearer " + token + "x", token));
  EXPECT_FALSE(TokenMatches(token, token)) << "no Bearer scheme";
  EXPECT_FALSE(TokenMatches("Bearer ", "")) << "no configured token matches nothing";
}

TEST(RedactErrorText, KeepsTheSqlstateAndDropsTheRowValues) {
  std::string r = RedactErrorText(kApplyError);
  EXPECT_EQ(r.find("alice@example.com"), std::string::npos) << r;
  EXPECT_EQ(r.find("accounts"), std::string::npos) << r;
  EXPECT_NE(r.find("PostgreSQL error 23505"), std::string::npos) << r;
  EXPECT_NE(r.find("admin bearer token"), std::string::npos) << "says how to see more: " << r;
}

TEST(RedactErrorText, NonPostgresErrorsKeepOnlyTheirKind) {
  std::string r = RedactErrorText("not found: applying xid 9: row not found: (id)=(secret-42)");
  EXPECT_EQ(r.find("secret-42"), std::string::npos) << r;
  EXPECT_TRUE(r.starts_with("not found (")) << r;
  EXPECT_EQ(RedactErrorText("whatever (id)=(secret-42)").find("secret-42"), std::string::npos);
  EXPECT_EQ(RedactErrorText(""), "");
}

ReplicaSnapshot FailedReplica() {
  ReplicaSnapshot s;
  s.id.site = "dublin";
  s.id.cluster_id = "prod";
  s.connected = true;
  s.apply_error = kApplyError;
  s.seed.error = "PostgreSQL error 22P02: COPY: invalid input syntax for type integer: \"b0b\"";
  return s;
}

TEST(RedactStatus, AnonymousStatusOfAFailedApplyHasNoRowValues) {
  nlohmann::json full = StatusJson(FailedReplica());
  ASSERT_NE(full.dump().find("alice@example.com"), std::string::npos)
      << "the operator's /status shows the whole error";
  nlohmann::json redacted = RedactStatus(full);
  EXPECT_EQ(redacted.dump().find("alice@example.com"), std::string::npos) << redacted.dump(2);
  EXPECT_EQ(redacted.dump().find("b0b"), std::string::npos) << redacted.dump(2);
  EXPECT_NE(redacted["replica"]["apply"]["error"].get<std::string>().find("23505"),
            std::string::npos);
  EXPECT_NE(redacted["last_error"].get<std::string>().find("23505"), std::string::npos);
  EXPECT_EQ(redacted["state"], "apply_error") << "the state stays visible";
  EXPECT_EQ(redacted["site"], "dublin");
}

TEST(RedactStatus, NetworkErrorsStayReadable) {
  ReplicaSnapshot s;
  s.connected = false;
  s.receiver_error = "I/O error: connecting to 10.0.0.5:7450: Connection refused";
  nlohmann::json redacted = RedactStatus(StatusJson(s));
  EXPECT_EQ(redacted["last_error"], s.receiver_error);
}

TEST(Route, StatusAndReadyzWithoutTheTokenAreRedacted) {
  AdminHandlers h;
  ReplicaSnapshot s = FailedReplica();
  h.status = [&] { return StatusJson(s); };
  h.ready = [&] { return ReplicaReadiness(s, 60); };
  const std::string token(40, 'k');
  HttpReply anonymous = Route({"GET", "/status", ""}, h, token);
  EXPECT_EQ(anonymous.status, 200u);
  EXPECT_EQ(anonymous.body.find("alice@example.com"), std::string::npos) << anonymous.body;
  HttpReply wrong = Route({"GET", "/status", "Bearer " + std::string(40, 'x')}, h, token);
  EXPECT_EQ(wrong.body.find("alice@example.com"), std::string::npos) << "a wrong token is none";
  HttpReply full = Route({"GET", "/status", "Bearer " + token}, h, token);
  EXPECT_NE(full.body.find("alice@example.com"), std::string::npos) << full.body;

  HttpReply ready = Route({"GET", "/readyz", ""}, h, token);
  EXPECT_EQ(ready.status, 503u);
  EXPECT_EQ(ready.body.find("alice@example.com"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("apply stopped: PostgreSQL error 23505"), std::string::npos)
      << ready.body;
  EXPECT_NE(Route({"GET", "/readyz", "Bearer " + token}, h, token).body.find("alice@example.com"),
            std::string::npos);
}

}  // namespace
}  // namespace geosync::admin
