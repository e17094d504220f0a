// fsync helpers: a file's data and a folder's entries, so a rename or a new file survives a power cut.
#pragma once

#include <filesystem>

#include "common/status.h"

namespace aihub {

// fsyncs the folder itself (its entries: new names, renames). UNAVAILABLE with errno text on failure.
Status FsyncDir(const std::filesystem::path& dir);
// Opens the file read-only and fsyncs its data and metadata.
Status FsyncFile(const std::filesystem::path& file);

}  // namespace aihub
