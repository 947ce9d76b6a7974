#include "common/logical_message.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

TEST(LogicalMessage, DdlMessageWithEveryKey) {
  auto m =
      ParseDdlMessage(R"j({"sql":"ALTER TABLE t ADD c int","search_path":"app","role":"owner"})j");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(*m, (DdlMessage{"ALTER TABLE t ADD c int", "app", "owner"}));
}

TEST(LogicalMessage, DdlMessageWithoutRoleHasAnEmptyRole) {
  auto m = ParseDdlMessage(R"j({"sql":"CREATE TABLE x (i int)","role":7})j");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->role, "");
  EXPECT_EQ(m->search_path, "");
}

TEST(LogicalMessage, MalformedDdlMessagesNameThePrefixAndTheFault) {
  for (const char* text : {"", "{", "[1]", R"j({"search_path":"a"})j", R"j({"sql":5})j"}) {
    auto m = ParseDdlMessage(text);
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument) << text;
    EXPECT_NE(m.status().message().find("malformed geosync.ddl message"), std::string::npos)
        << m.status().ToString();
  }
  EXPECT_NE(ParseDdlMessage(R"j({"sql":5})j").status().message().find("\"sql\""),
            std::string::npos);
}

TEST(LogicalMessage, SequencesSkipNeverUsedOnesAndKeepDecimalText) {
  auto m = ParseSequencesMessage(
      R"j([{"schema":"public","name":"a_id_seq","last_value":9223372036854775807},
          {"schema":"public","name":"unused","last_value":null},
          {"schema":"s","name":"b","last_value":"-5"}])j");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0], (SequenceValue{"public", "a_id_seq", "9223372036854775807"}));
  EXPECT_EQ((*m)[1], (SequenceValue{"s", "b", "-5"}));
}

TEST(LogicalMessage, MalformedSequencesNameTheEntry) {
  auto m = ParseSequencesMessage(R"j([{"schema":"s","name":"a","last_value":1},{"schema":"s"}])j");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("entry 1"), std::string::npos) << m.status().ToString();
  for (const char* text : {"{}", "nope", R"j([{"schema":"s","name":"a","last_value":1.5}])j",
                           R"j([{"schema":"s","name":"a"}])j", "[3]"}) {
    auto bad = ParseSequencesMessage(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_NE(bad.status().message().find("malformed geosync.sequences message"), std::string::npos)
        << bad.status().ToString();
  }
}

}  // namespace
}  // namespace geosync
