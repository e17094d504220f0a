// Internal helpers shared by scanning (study.cpp) and decoding (decode.cpp); not part of the public API.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <dcmtk/dcmdata/dcfilefo.h>

namespace aihub::dicom::internal {

// Values longer than this stay in the file and are read on access (DCMTK lazy loading), so parsing a file
// never pulls pixel data or large private blobs into memory.
constexpr Uint32 kLazyLoadThreshold = 4096;

// Parses `path` up to and including the PixelData element (its header, or its fragment items when encapsulated);
// values above kLazyLoadThreshold are left in the file. Opens the file once.
OFCondition LoadHeader(const std::filesystem::path& path, DcmFileFormat& file);

// Whether `path` starts with the 128-byte preamble and "DICM". Only asked when parsing failed or found no
// identifying attributes (tells "truncated DICOM" from "not DICOM"), so good files are opened once.
bool HasPreamble(const std::filesystem::path& path);


// Transfer syntax of a loaded file: the meta header's UID when present, else what DCMTK detected. Valid UTF-8.
std::string TransferSyntaxUid(DcmFileFormat& file);

// Empty when the pixel data of `uid` can be decoded here; else the reason, naming the transfer syntax.
std::string TransferSyntaxProblem(const std::string& uid);

// Bytes of one native (uncompressed) frame; 0 when the pixel module cannot describe a native frame.
uint64_t NativeFrameBytes(uint32_t rows, uint32_t columns, uint32_t samples_per_pixel, uint32_t bits_allocated,
                          const std::string& photometric);

}  // namespace aihub::dicom::internal
