// Strict JSON object reading with precise error messages.
#include "common/json_reader.h"

#include <fmt/format.h>

namespace geosync {

std::string DescribeJson(const nlohmann::json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  switch (v.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "an object";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::string:
      return "string " + text;
    case nlohmann::json::value_t::boolean:
      return "boolean " + text;
    case nlohmann::json::value_t::number_float:
      return "number " + text;
    default:
      return "integer " + text;
  }
}

JsonReader::JsonReader(const nlohmann::json& object, std::string file, std::string prefix)
    : object_(object),
      file_(std::move(file)),
      prefix_(std::move(prefix)),
      errors_(std::make_shared<std::vector<std::string>>()) {}

JsonReader JsonReader::Child(const nlohmann::json& object, const std::string& key) const {
  JsonReader child(object, file_, Path(key));
  child.errors_ = errors_;
  return child;
}

std::string JsonReader::Path(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

void JsonReader::AddError(std::string message) {
  errors_->push_back(fmt::format("config {}: {}", file_, message));
}

bool JsonReader::Has(const std::string& key) const {
  return object_.is_object() && object_.contains(key);
}

const nlohmann::json* JsonReader::Find(const std::string& key, bool required) {
  known_.insert(key);
  auto it = object_.find(key);
  if (it == object_.end()) {
    if (required) AddError(fmt::format("missing required key '{}'", Path(key)));
    return nullptr;
  }
  return &*it;
}

void JsonReader::TypeError(const std::string& key, const char* expected,
                           const nlohmann::json& found) {
  AddError(fmt::format("key '{}' expected {}, found {}", Path(key), expected, DescribeJson(found)));
}

bool JsonReader::String(const std::string& key, std::string* out, bool required) {
  const auto* v = Find(key, required);
  if (!v) return !required;
  if (!v->is_string()) {
    TypeError(key, "a string", *v);
    return false;
  }
  *out = v->get<std::string>();
  return true;
}

bool JsonReader::Int(const std::string& key, int64_t min, int64_t max, int64_t* out,
                     bool required) {
  const auto* v = Find(key, required);
  if (!v) return !required;
  if (!v->is_number_integer()) {
    TypeError(key, "an integer", *v);
    return false;
  }
  int64_t n =
      v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX ? INT64_MAX : v->get<int64_t>();
  if (n < min || n > max) {
    AddError(fmt::format("key '{}' expected an integer from {} to {}, found {}", Path(key), min,
                         max, n));
    return false;
  }
  *out = n;
  return true;
}

bool JsonReader::Bool(const std::string& key, bool* out, bool required) {
  const auto* v = Find(key, required);
  if (!v) return !required;
  if (!v->is_boolean()) {
    TypeError(key, "true or false", *v);
    return false;
  }
  *out = v->get<bool>();
  return true;
}

bool JsonReader::StringList(const std::string& key, std::vector<std::string>* out) {
  const auto* v = Find(key, false);
  if (!v) return true;
  if (!v->is_array()) {
    TypeError(key, "an array of strings", *v);
    return false;
  }
  std::vector<std::string> items;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      AddError(fmt::format("key '{}[{}]' expected a string, found {}", Path(key), i,
                           DescribeJson((*v)[i])));
      return false;
    }
    items.push_back((*v)[i].get<std::string>());
  }
  *out = std::move(items);
  return true;
}

bool JsonReader::Enum(const std::string& key, const std::vector<std::string>& allowed,
                      std::string* out, bool required) {
  std::string value;
  if (!String(key, &value, required)) return false;
  if (!Has(key)) return true;
  for (const auto& a : allowed) {
    if (a == value) {
      *out = value;
      return true;
    }
  }
  AddError(fmt::format("key '{}' expected one of {}, found \"{}\"", Path(key),
                       fmt::join(allowed, ", "), value));
  return false;
}

const nlohmann::json* JsonReader::Object(const std::string& key, bool required) {
  const auto* v = Find(key, required);
  if (!v) return nullptr;
  if (!v->is_object()) {
    TypeError(key, "an object", *v);
    return nullptr;
  }
  return v;
}

void JsonReader::CheckNoUnknownKeys() {
  if (!object_.is_object()) return;
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (!known_.count(it.key())) {
      AddError(fmt::format("unknown key '{}' (known keys here: {})", Path(it.key()),
                           fmt::join(known_, ", ")));
    }
  }
}

Status JsonReader::status() const {
  if (errors_->empty()) return Status::Ok();
  return Status::Config(errors_->front());
}

}  // namespace geosync
