#include "phantom/label_mask.h"

#include <fstream>
#include <system_error>

namespace aihub::phantom {

nlohmann::json LabelMaskLayoutToJson(const LabelMaskLayout& layout) {
  nlohmann::json labels = nlohmann::json::object();
  labels["0"] = "background";
  for (const auto& [value, meaning] : layout.labels) labels[std::to_string(value)] = meaning;
  return {{"dtype", "uint8"},
          {"order", "C"},
          {"shape", {layout.slices, layout.rows, layout.columns}},
          {"labels", labels}};
}

Status WriteLabelMask(const std::filesystem::path& file, const std::vector<uint8_t>& mask,
                      const LabelMaskLayout& layout) {
  if (mask.size() != layout.Voxels()) {
    return InvalidArgument("label mask holds " + std::to_string(mask.size()) + " values, its layout " +
                           std::to_string(layout.Voxels()));
  }
  if (file.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) return Unavailable("cannot create " + file.parent_path().string() + ": " + ec.message());
  }
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(mask.data()), static_cast<std::streamsize>(mask.size()));
    out.close();
    if (!out) return Unavailable("cannot write " + file.string());
  }
  std::filesystem::path sidecar = file;
  sidecar += ".json";
  std::ofstream out(sidecar, std::ios::binary | std::ios::trunc);
  out << LabelMaskLayoutToJson(layout).dump(2) << "\n";
  out.close();
  if (!out) return Unavailable("cannot write " + sidecar.string());
  return Status::Ok();
}

}  // namespace aihub::phantom
