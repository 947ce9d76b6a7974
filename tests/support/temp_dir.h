// A directory under /tmp that exists for the life of the object and is
// removed with everything in it afterwards.
#pragma once

#include <string>

namespace geosync::testing {

class TempDir {
 public:
  // /tmp/geosync-<name>-XXXXXX; throws std::runtime_error when it cannot be made.
  explicit TempDir(const std::string& name);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace geosync::testing
