// The secret key of the audit chain. It lives in a file outside the database (default: audit.key beside it),
// so that someone who can write the database but not read the key cannot recompute the chain after an edit.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"

namespace aihub::store {

inline constexpr size_t kAuditKeyBytes = 32;

// <folder of db_path>/audit.key
std::filesystem::path DefaultAuditKeyPath(const std::filesystem::path& db_path);

// Reads an existing key: NOT_FOUND when the file does not exist; FAILED_PRECONDITION when it exists but cannot
// be read, is not a regular file or is not exactly kAuditKeyBytes long.
StatusOr<std::string> ReadAuditKey(const std::filesystem::path& key_path);

// Creates a new key file (kAuditKeyBytes from RAND_bytes, mode 0600, fsync'd with its folder) unless one exists,
// then returns the key on disk. Creation is atomic (written aside, then link()ed into place), so processes
// racing on a first start all end up with the same key and nobody reads a half-written file.
// *created says whether this call wrote it.
StatusOr<std::string> CreateAuditKey(const std::filesystem::path& key_path, bool* created);

// Lower-case hex HMAC-SHA256 of data under key.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// Lower-case hex of n random bytes from the OpenSSL CSPRNG ("" if it fails).
std::string RandomHex(size_t n);

}  // namespace aihub::store
