// The embedder of sdk/watermark.py: marks rendered frames as synthetic with an invisible
// watermark that talkinghead.sdk.watermark.detect reads. The detector is not ported.
#pragma once

#include <cstdint>
#include <vector>

#include "constants.h"

namespace talkinghead {

// The mark's key, strength, grid, tile, canonical size, code and minimum frame side
// (kWatermarkKey, kWatermarkStrength, kWatermarkGrid, ...) are generated into constants.h.

// What the mark carries: a 24-bit pack id and an 8-bit SDK version code.
struct WatermarkPayload {
  uint32_t pack_id = 0;
  uint32_t version = 0;
};

// sdk_version_code: "MAJOR.MINOR.PATCH" -> 2 bits major, 3 minor, 3 patch (each modulo).
uint32_t sdk_version_code(const char* version);

// Watermark(payload).embed(frame) for frames of one size. Construction does the per-size
// and per-payload work (layout, templates, codeword, resampling weights); embed does the
// per-frame work. embed uses buffers held by the object: one call at a time per object.
class Watermark {
 public:
  // height, width >= kWatermarkMinSide px.
  Watermark(WatermarkPayload payload, int height, int width);

  // Mark an (height, width, 3) uint8 RGB frame in place.
  void embed(uint8_t* rgb);

 private:
  struct Resample {  // PIL's separable resampling of one axis to kWatermarkCanon
    int taps = 0;
    std::vector<int> first;      // (kWatermarkCanon,) first input index
    std::vector<int> count;      // (kWatermarkCanon,) taps used
    std::vector<double> weight;  // (kWatermarkCanon, taps)
  };
  struct Tap {  // one non-zero entry of a coded bit's template
    int pixel;     // index into the kWatermarkCanon^2 canon image
    double value;  // template value; its square weighs the local energy
  };

  void luma_canon(const uint8_t* rgb);
  void amplitudes(float* amp, float* weight);  // (kCoded,), (kGrid * kGrid,)

  int height_, width_;
  float code_[kWatermarkCodedBits];           // +-1 codeword
  int owner_[kWatermarkGrid * kWatermarkGrid];  // coded bit of each chip
  float sign_[kWatermarkGrid * kWatermarkGrid];
  float share_[kWatermarkGrid * kWatermarkGrid];  // each chip's share of the frame's pixels
  std::vector<std::vector<Tap>> templates_;       // (kWatermarkCodedBits,) sparse templates
  std::vector<int> chip_row_, chip_col_;          // chip index of each pixel row / column
  Resample rows_, cols_;
  // Per-frame buffers.
  std::vector<float> luma_, wide_, canon_, blurred_, residual_, weighted_, inverse_energy_;
};

}  // namespace talkinghead
