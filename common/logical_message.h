// The JSON bodies of geosync's own logical messages (pg_logical_emit_message
// with a "geosync." prefix, common/change.h). They are written by SQL on the
// source: geosync.ddl by the trigger of schemas/ddl_capture.sql, and
// geosync.sequences by agent/source/control_emitter.cpp. Both arrive inside
// the WAL stream, so a replica parses them as untrusted bytes: anything that
// is not the documented shape is Status::InvalidArgument naming the prefix.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace geosync {

// geosync.ddl: {"sql": text, "search_path": text, "role": text}. "sql" is
// required; the other two are "" when absent or not strings (messages
// written before `geosyncctl init` was rerun name no role).
struct DdlMessage {
  std::string sql;
  std::string search_path;
  std::string role;

  bool operator==(const DdlMessage&) const = default;
};
Result<DdlMessage> ParseDdlMessage(std::string_view content);

// geosync.sequences: [{"schema": text, "name": text, "last_value": int or
// text or null}, ...]. A null last_value (a sequence never used on the
// source) is left out. `last_value` keeps the decimal text.
struct SequenceValue {
  std::string schema;
  std::string name;
  std::string last_value;

  bool operator==(const SequenceValue&) const = default;
};
Result<std::vector<SequenceValue>> ParseSequencesMessage(std::string_view content);

}  // namespace geosync
