#include "core/folder_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "common/fsync.h"

namespace aihub::core {

namespace fs = std::filesystem;

namespace {

Status Errno(const std::string& what, const fs::path& p) {
  return Unavailable(what + " " + p.string() + ": " + std::strerror(errno));
}

}  // namespace

Status WriteFileAtomically(const fs::path& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return Unavailable("cannot create " + path.parent_path().string() + ": " + ec.message());
  // A unique temporary name (mkstemp) in the same folder: concurrent writers never share a temp file.
  std::string tmp_name = (path.parent_path() / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkostemp(tmp_name.data(), O_CLOEXEC);
  const fs::path tmp = tmp_name;
  if (fd < 0) return Errno("cannot create", tmp);
  ::fchmod(fd, 0644);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = Errno("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Errno("cannot flush", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = Errno("cannot rename into", path);
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(path.parent_path());
}

StatusOr<int> DrainFileOutbox(store::JobStore& store) {
  // One drainer at a time: outbox items are not claimed, so two workers draining at once would deliver the
  // same item twice.
  static std::mutex drain_mutex;
  std::lock_guard<std::mutex> lock(drain_mutex);
  int delivered = 0;
  for (;;) {
    auto due = store.DueOutbox(64);
    if (!due.ok()) return due.status();
    int handled = 0;
    for (const store::OutboxItem& item : *due) {
      if (item.kind != "file") continue;
      ++handled;
      Status st = WriteFileAtomically(item.destination, item.payload);
      if (st.ok()) {
        if (Status m = store.MarkDelivered(item.id); !m.ok()) return m;
        ++delivered;
      } else if (Status m = store.MarkDeliveryFailed(item.id, st.ToString()); !m.ok()) {
        return m;
      }
    }
    if (handled == 0) break;
  }
  return delivered;
}

}  // namespace aihub::core
