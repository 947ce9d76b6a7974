// The JSON bodies of geosync's logical messages (common/logical_message.h)
// and the DDL text checks behind geosync.ddl (common/ddl_text.h). A login on
// the primary that is not geosync can try to shape both, so a replica must
// refuse anything else cleanly.
//
// Input: the message content.
#include <string_view>

#include "common/ddl_text.h"
#include "common/logical_message.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ddl = ParseDdlMessage(text);
  if (ddl.ok()) {
    // What a replica would run, split again as PostgreSQL's simple query
    // protocol would see it, holds only allowed statements: joining the kept
    // statements must not let a refused one through.
    DdlReplay replay = DdlToReplay(ddl->sql);
    if (replay.refusal.empty()) {
      for (std::string_view statement : SplitSqlStatements(replay.sql)) {
        GEOSYNC_FUZZ_CHECK(ClassifyDdlStatement(statement).kind == DdlStatementKind::kRun);
      }
    }
  } else {
    GEOSYNC_FUZZ_CHECK(ddl.status().code() == Code::kInvalidArgument);
  }
  auto sequences = ParseSequencesMessage(text);
  GEOSYNC_FUZZ_CHECK(sequences.ok() || sequences.status().code() == Code::kInvalidArgument);
  for (std::string_view statement : SplitSqlStatements(text)) {
    GEOSYNC_FUZZ_CHECK(statement.data() >= text.data() &&
                       statement.data() + statement.size() <= text.data() + text.size());
    (void)FirstKeyword(statement);
  }
  (void)DdlToReplay(text);
  return 0;
}
