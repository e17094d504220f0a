// Portable random draws for the phantom generators.
//
// The standard fixes std::mt19937_64's output sequence but not the algorithms of its distributions, so the
// generators derive uniform and normal draws here to stay byte-identical across standard libraries.
#pragma once

#include <cstdint>
#include <random>

namespace aihub::phantom {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  uint64_t Bits() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [lo, hi].
  int UniformInt(int lo, int hi) {
    const int v = lo + static_cast<int>(Uniform() * (hi - lo + 1));
    return v > hi ? hi : v;
  }
  // Approximately standard normal: an Irwin-Hall sum of four 16-bit uniforms from one engine call. Cheap
  // enough to draw per voxel; its tails stop at +-3.46 sd, which suits image noise.
  double Normal() {
    const uint64_t b = engine_();
    double sum = 0;
    for (int i = 0; i < 4; ++i) sum += (static_cast<double>((b >> (16 * i)) & 0xffff) + 0.5) * (1.0 / 65536.0);
    return (sum - 2.0) * 1.7320508075688772;
  }

 private:
  std::mt19937_64 engine_;
};

// Derives the seed of an independent stream (anatomy, lesion, noise of slice k) from a study seed (splitmix64),
// so that, e.g., the same seed with and without a lesion gives the same anatomy and noise.
inline uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace aihub::phantom
