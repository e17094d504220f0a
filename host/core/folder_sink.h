// Delivers outbox items of kind "file": writes the payload to the destination path atomically (temporary
// file, fsync, rename, fsync of the folder), so a crash never leaves a half-written result behind.
#pragma once

#include <filesystem>
#include <string>

#include "common/status.h"
#include "store/job_store.h"

namespace aihub::core {

Status WriteFileAtomically(const std::filesystem::path& path, const std::string& bytes);

// Delivers every due "file" item; returns how many were delivered. Failures are recorded on the item
// (retried with backoff, dead-lettered after the store's limit).
StatusOr<int> DrainFileOutbox(store::JobStore& store);

}  // namespace aihub::core
