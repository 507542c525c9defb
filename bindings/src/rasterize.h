// The landmark rasteriser and the image <-> tensor conversions of the Python SDK,
// ported so that a native frame equals the Python frame bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace talkinghead {

constexpr int kNumLandmarks = 68;

// max(1, size / 64): the line thickness in px used when none is given.
double default_thickness(int size);

// Draw the landmark image. pts: 68 (x, y) pairs in px; out: size*size*3 RGB, overwritten.
void rasterize_landmarks(const double* pts, int size, double thickness, uint8_t* out);

// (S, S, 3) uint8 RGB -> (3, S, S) float32 in [-1, 1].
void to_model_input(const uint8_t* rgb, int size, float* chw);

// (3, S, S) float32 -> (S, S, 3) uint8: round half to even, clipped to [0, 255]; NaN -> 0.
void from_model_output(const float* chw, int size, uint8_t* rgb);

}  // namespace talkinghead
