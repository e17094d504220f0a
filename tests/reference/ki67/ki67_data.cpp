// ki67_data: data for the Ki-67 reference model, built from the phantom's C++ API and the plugin's own detector
// (plugins/ki67/ki67_analysis.cpp), so train.py learns from exactly the features the plugin computes.
//
//   ki67_data features --out FILE --first-seed N --count K [--size 2048] [--tile 256]
//       Renders each slide tile by tile (nothing written to disk but FILE), detects nuclei as the plugin does,
//       matches each detection to the generator's nucleus whose centre lies within 6 px of its centroid, and writes
//       float32 rows of kFeatureCount features, then label (1 positive, 0 negative, -1 unmatched), seed, tile.
//       Slide k uses seed N + k, index 3 + (seed * 7919) % 58 % and (seed % 4) hot spots. Prints a JSON summary
//       (rows, truth nuclei, matched, unmatched detections, missed nuclei) on stdout.
//   ki67_data wsi-ki67 --out DIR --seed N [--size 4096] [--tile 256] [--index 20] [--hotspots 2]
//       [--missing-tile K] [--bad-tile-geometry] [--rle]
//       Writes a slide with WriteWsiKi67 (the same options as `aihub-phantom wsi-ki67`) and prints its folder.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ki67_analysis.h"
#include "phantom/wsi_ki67.h"

namespace {

using aihub::phantom::Ki67Nucleus;
using aihub::phantom::WsiKi67Options;
using aihub::phantom::WsiKi67Slide;

int Usage() {
  std::fprintf(stderr,
               "usage: ki67_data features --out FILE --first-seed N --count K [--size 2048] [--tile 256]\n"
               "       ki67_data wsi-ki67 --out DIR --seed N [--size 4096] [--tile 256] [--index 20] [--hotspots 2]\n"
               "                 [--missing-tile K] [--bad-tile-geometry] [--rle]\n");
  return 2;
}

struct Args {
  std::string out;
  uint64_t seed = 1, count = 1;
  WsiKi67Options options;
};

bool Parse(int argc, char** argv, Args& a) {
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--bad-tile-geometry" || flag == "--rle") {
      (flag == "--rle" ? a.options.rle : a.options.bad_tile_geometry) = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (flag == "--out") {
      a.out = v;
    } else if (flag == "--seed" || flag == "--first-seed") {
      a.seed = std::strtoull(v.c_str(), nullptr, 10);
    } else if (flag == "--count") {
      a.count = std::strtoull(v.c_str(), nullptr, 10);
    } else if (flag == "--size") {
      a.options.size = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag == "--tile") {
      a.options.tile = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag == "--index") {
      a.options.index_percent = std::strtod(v.c_str(), nullptr);
    } else if (flag == "--hotspots") {
      a.options.hotspots = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (flag == "--missing-tile") {
      a.options.missing_tile = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else {
      return false;
    }
  }
  return !a.out.empty();
}

int Features(Args& a) {
  std::ofstream out(a.out, std::ios::binary | std::ios::trunc);
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", a.out.c_str());
    return 1;
  }
  aihub::ki67::TileDetector detector;
  uint64_t rows = 0, truth_total = 0, matched = 0, unmatched = 0, missed = 0;
  std::vector<uint8_t> rgb;
  for (uint64_t k = 0; k < a.count; ++k) {
    WsiKi67Options o = a.options;
    o.seed = a.seed + k;
    o.index_percent = 3 + static_cast<double>((o.seed * 7919) % 58);
    o.hotspots = static_cast<uint32_t>(o.seed % 4);
    auto slide = WsiKi67Slide::Create(o);
    if (!slide.ok()) {
      std::fprintf(stderr, "%s\n", slide.status().ToString().c_str());
      return 1;
    }
    rgb.resize(size_t{o.tile} * o.tile * 3);
    for (uint32_t t = 0; t < slide->tile_count(); ++t) {
      const std::vector<Ki67Nucleus> truth = slide->TileNuclei(t);
      slide->RenderTile(t, truth, rgb.data());
      const auto& found = detector.Detect(rgb.data(), o.tile, o.tile, o.tile, o.tile);
      std::vector<bool> used(truth.size(), false);
      truth_total += truth.size();
      for (const auto& d : found) {
        float label = -1;
        for (size_t i = 0; i < truth.size(); ++i) {
          if (!used[i] && std::hypot(truth[i].column - d.column, truth[i].row - d.row) < 6) {
            used[i] = true;
            label = truth[i].positive ? 1.0f : 0.0f;
            break;
          }
        }
        (label < 0 ? unmatched : matched) += 1;
        float row[aihub::ki67::kFeatureCount + 3];
        for (int f = 0; f < aihub::ki67::kFeatureCount; ++f) row[f] = d.features[f];
        row[aihub::ki67::kFeatureCount] = label;
        row[aihub::ki67::kFeatureCount + 1] = static_cast<float>(o.seed);
        row[aihub::ki67::kFeatureCount + 2] = static_cast<float>(t);
        out.write(reinterpret_cast<const char*>(row), sizeof row);
        rows += 1;
      }
      for (bool u : used) missed += u ? 0 : 1;
    }
  }
  out.close();
  if (!out) return 1;
  nlohmann::json j = {{"rows", rows},       {"columns", aihub::ki67::kFeatureCount + 3},
                      {"truth_nuclei", truth_total}, {"matched", matched},
                      {"unmatched_detections", unmatched}, {"missed_nuclei", missed},
                      {"feature_set", aihub::ki67::kFeatureSet}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int WriteSlide(Args& a) {
  a.options.seed = a.seed;
  const auto t = aihub::phantom::WriteWsiKi67(a.options, a.out);
  if (!t.ok()) {
    std::fprintf(stderr, "ki67_data: %s\n", t.status().ToString().c_str());
    return 1;
  }
  std::printf("%s/%s: %u frames, Ki-67 index %.1f%%, hot spot %.1f%%\n", a.out.c_str(), t->folder.c_str(), t->frames,
              t->global_index_percent, t->hotspot.index_percent);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string command = argv[1];
  Args a;
  if (command == "features") a.options.size = 2048;
  if (!Parse(argc, argv, a)) return Usage();
  if (command == "features") return Features(a);
  if (command == "wsi-ki67") return WriteSlide(a);
  return Usage();
}
