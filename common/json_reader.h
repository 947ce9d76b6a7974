// Strict reading of JSON objects for config-like files: each accessor records
// which keys were read, so unknown keys can be reported, and every error names
// the file, the dotted key path, what was expected and what was found.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace geosync {

class JsonReader {
 public:
  JsonReader(const nlohmann::json& object, std::string file, std::string prefix = "");

  // Each returns false and records an error when the key has the wrong type;
  // a missing optional key leaves *out unchanged.
  bool String(const std::string& key, std::string* out, bool required = false);
  bool Int(const std::string& key, int64_t min, int64_t max, int64_t* out, bool required = false);
  bool Bool(const std::string& key, bool* out, bool required = false);
  bool StringList(const std::string& key, std::vector<std::string>* out);
  bool Enum(const std::string& key, const std::vector<std::string>& allowed, std::string* out,
            bool required = false);
  // A nested object, or nullptr when absent (error if present but not an object).
  const nlohmann::json* Object(const std::string& key, bool required = false);
  bool Has(const std::string& key) const;

  std::string Path(const std::string& key) const;
  // Reports keys present in the object that no accessor asked for.
  void CheckNoUnknownKeys();
  void AddError(std::string message);
  const std::string& file() const { return file_; }
  // The first error, as Status::Config, or OK.
  Status status() const;
  std::vector<std::string>& errors() { return *errors_; }
  JsonReader Child(const nlohmann::json& object, const std::string& key) const;

 private:
  const nlohmann::json* Find(const std::string& key, bool required);
  void TypeError(const std::string& key, const char* expected, const nlohmann::json& found);

  const nlohmann::json& object_;
  std::string file_;
  std::string prefix_;
  std::set<std::string> known_;
  std::shared_ptr<std::vector<std::string>> errors_;
};

// "string \"abc\"", "integer 5", "array", "null"... for messages.
std::string DescribeJson(const nlohmann::json& value);

}  // namespace geosync
