#include "common/fsync.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace aihub {

namespace {

Status SyncPath(const std::filesystem::path& path, int flags) {
  const int fd = ::open(path.empty() ? "." : path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Unavailable("cannot open " + path.string() + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Unavailable("cannot fsync " + path.string() + ": " + std::strerror(err));
  return Status::Ok();
}

}  // namespace

Status FsyncDir(const std::filesystem::path& dir) { return SyncPath(dir, O_RDONLY | O_DIRECTORY); }
Status FsyncFile(const std::filesystem::path& file) { return SyncPath(file, O_RDONLY); }

}  // namespace aihub
