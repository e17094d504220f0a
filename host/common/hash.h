// Content hashes and deterministic identifiers.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"

namespace aihub {

// Lower-case hex SHA-256 of bytes.
std::string Sha256Hex(std::string_view data);
// Lower-case hex SHA-256 of a file's content, streamed.
StatusOr<std::string> Sha256File(const std::filesystem::path& path);

// A DICOM UID under the 2.25 root (ITU-T X.667 UUID-derived), made deterministically from `seed`:
// the first 128 bits of SHA-256(seed) as an unsigned decimal. Same seed, same UID; at most 64 chars.
std::string UidFromSeed(std::string_view seed);

// A UID is safe to use as a path component or in a URL only if it is a valid UID: digits and dots, <= 64 chars,
// no empty component. Anything else is refused rather than escaped.
bool IsValidUid(std::string_view uid);

}  // namespace aihub
