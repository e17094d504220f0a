#include "store/audit_key.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/fsync.h"

namespace aihub::store {
namespace {

std::string ToHex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

std::string Errno(int e) { return std::strerror(e); }

// Closes the descriptor on every path.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};


}  // namespace

std::filesystem::path DefaultAuditKeyPath(const std::filesystem::path& db_path) {
  return db_path.parent_path() / "audit.key";
}

StatusOr<std::string> ReadAuditKey(const std::filesystem::path& key_path) {
  Fd f{open(key_path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    const int e = errno;
    if (e == ENOENT) return NotFound("audit key " + key_path.string() + " does not exist");
    return FailedPrecondition("cannot read audit key " + key_path.string() + ": " + Errno(e));
  }
  struct stat st {};
  if (fstat(f.fd, &st) != 0) return FailedPrecondition("cannot stat audit key " + key_path.string() + ": " + Errno(errno));
  if (!S_ISREG(st.st_mode)) return FailedPrecondition("audit key " + key_path.string() + " is not a regular file");
  if (st.st_size != static_cast<off_t>(kAuditKeyBytes)) {
    return FailedPrecondition("audit key " + key_path.string() + " has " + std::to_string(st.st_size) +
                              " bytes, expected " + std::to_string(kAuditKeyBytes));
  }
  std::string key(kAuditKeyBytes, '\0');
  size_t got = 0;
  while (got < key.size()) {
    ssize_t n = read(f.fd, key.data() + got, key.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailedPrecondition("cannot read audit key " + key_path.string() + ": " + Errno(errno));
    if (n == 0) return FailedPrecondition("audit key " + key_path.string() + " is shorter than it claims");
    got += static_cast<size_t>(n);
  }
  return key;
}

StatusOr<std::string> CreateAuditKey(const std::filesystem::path& key_path, bool* created) {
  *created = false;
  const std::filesystem::path dir = key_path.parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());
  }
  unsigned char bytes[kAuditKeyBytes];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return Internal("RAND_bytes failed to make an audit key");
  const std::string suffix = RandomHex(8);
  if (suffix.empty()) return Internal("RAND_bytes failed");
  std::filesystem::path tmp = key_path;
  tmp += ".tmp-" + std::to_string(getpid()) + "-" + suffix;
  {
    Fd f{open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
    if (f.fd < 0) return Unavailable("cannot create " + tmp.string() + ": " + Errno(errno));
    size_t put = 0;
    while (put < sizeof(bytes)) {
      ssize_t n = write(f.fd, bytes + put, sizeof(bytes) - put);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int e = errno;
        unlink(tmp.c_str());
        return Unavailable("cannot write " + tmp.string() + ": " + Errno(e));
      }
      put += static_cast<size_t>(n);
    }
    if (fchmod(f.fd, 0600) != 0 || fsync(f.fd) != 0) {
      const int e = errno;
      unlink(tmp.c_str());
      return Unavailable("cannot sync " + tmp.string() + ": " + Errno(e));
    }
  }
  // link() fails with EEXIST instead of replacing: a key that is already there always wins.
  const int linked = link(tmp.c_str(), key_path.c_str());
  const int link_errno = errno;
  unlink(tmp.c_str());
  if (linked != 0 && link_errno != EEXIST) {
    return Unavailable("cannot create audit key " + key_path.string() + ": " + Errno(link_errno));
  }
  if (Status st = FsyncDir(dir); !st.ok()) return st;
  *created = linked == 0;
  return ReadAuditKey(key_path);
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), md, &n) == nullptr) {
    return std::string();  // never equals a stored 64-char MAC, so a failure reads as a mismatch
  }
  return ToHex(md, n);
}

std::string RandomHex(size_t n) {
  std::vector<unsigned char> bytes(n);
  if (n == 0 || RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) return std::string();
  return ToHex(bytes.data(), n);
}

}  // namespace aihub::store
