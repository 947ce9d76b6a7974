// How the admin API's JSON documents spell what is absent: null, never an
// empty string or a zero that could be read as a value.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace geosync::admin {

template <typename T>
nlohmann::json Opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

inline nlohmann::json Text(const std::string& s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}

}  // namespace geosync::admin
