#include "compose/ids.h"

#include "common/hash.h"

namespace aihub::compose {

// The seeds carry a purpose prefix so two kinds of id can never collide for the same job key.
void AssignIdentifiers(Result& result) {
  result.sr_series_instance_uid = UidFromSeed("aihub/sr-series\n" + result.job_key);
  result.sr_sop_instance_uid = UidFromSeed("aihub/sr-instance\n" + result.job_key);
  result.algorithm.device_uid =
      DeviceUid(result.algorithm.plugin_id, result.algorithm.version, result.algorithm.model_version);
}

std::string DeviceUid(const std::string& plugin_id, const std::string& version, const std::string& model_version) {
  // Newline separators: ("a", "bc") and ("ab", "c") must give different devices.
  return UidFromSeed("aihub/device\n" + plugin_id + "\n" + version + "\n" + model_version);
}

std::string FindingIdentifier(const Result& result, size_t index) {
  return result.sr_sop_instance_uid + "." + std::to_string(index);
}

std::string FindingTrackingUid(const Result& result, size_t index, size_t region) {
  return UidFromSeed("aihub/finding\n" + result.job_key + "\n" + std::to_string(index) + "\n" +
                     std::to_string(region));
}

std::string UuidFromSeed(const std::string& seed) {
  std::string hex = Sha256Hex(seed).substr(0, 32);
  hex[12] = '4';  // version 4 layout
  static const char kVariant[] = "89ab";
  hex[16] = kVariant[std::stoi(hex.substr(16, 1), nullptr, 16) & 3];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20, 12);
}

}  // namespace aihub::compose
