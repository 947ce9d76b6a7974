#include "common/logical_message.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/change.h"

namespace geosync {
namespace {

Status Malformed(std::string_view prefix, std::string_view why) {
  return Status::InvalidArgument(fmt::format("malformed {} message: {}", prefix, why));
}

}  // namespace

Result<DdlMessage> ParseDdlMessage(std::string_view content) {
  auto json = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Malformed(kDdlPrefix, "not JSON");
  if (!json.is_object()) return Malformed(kDdlPrefix, "not a JSON object");
  auto sql = json.find("sql");
  if (sql == json.end() || !sql->is_string()) {
    return Malformed(kDdlPrefix, "key \"sql\" is missing or not a string");
  }
  DdlMessage m;
  m.sql = sql->get<std::string>();
  if (auto it = json.find("search_path"); it != json.end() && it->is_string()) {
    m.search_path = it->get<std::string>();
  }
  if (auto it = json.find("role"); it != json.end() && it->is_string()) {
    m.role = it->get<std::string>();
  }
  return m;
}

Result<std::vector<SequenceValue>> ParseSequencesMessage(std::string_view content) {
  auto json = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Malformed(kSequencesPrefix, "not JSON");
  if (!json.is_array()) return Malformed(kSequencesPrefix, "not a JSON array");
  std::vector<SequenceValue> out;
  for (size_t i = 0; i < json.size(); ++i) {
    const auto& s = json[i];
    if (!s.is_object())
      return Malformed(kSequencesPrefix, fmt::format("entry {} is not an object", i));
    auto schema = s.find("schema");
    auto name = s.find("name");
    auto value = s.find("last_value");
    if (schema == s.end() || !schema->is_string() || name == s.end() || !name->is_string()) {
      return Malformed(kSequencesPrefix,
                       fmt::format("entry {}: \"schema\" and \"name\" must be strings", i));
    }
    if (value == s.end()) {
      return Malformed(kSequencesPrefix, fmt::format("entry {}: key \"last_value\" is missing", i));
    }
    if (value->is_null()) continue;  // never used on the source
    std::string text;
    if (value->is_number_integer()) {
      text = value->dump();
    } else if (value->is_string()) {
      text = value->get<std::string>();
    } else {
      return Malformed(kSequencesPrefix,
                       fmt::format("entry {}: \"last_value\" is neither an integer nor text", i));
    }
    out.push_back({schema->get<std::string>(), name->get<std::string>(), std::move(text)});
  }
  return out;
}

}  // namespace geosync
