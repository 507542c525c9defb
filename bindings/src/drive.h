// Driving an avatar from MediaPipe face tracking: the port of talkinghead.sdk.driver's
// MeshDriver, what the Python SDK does between the FaceLandmarker and Avatar.render:
//   normalised mesh -> pixels (sdk/tracker.py), irises for a 468-point mesh, One Euro
//   smoothing of every coordinate with speeds in face sizes per second (sdk/smoothing.py,
//   sdk/tracks.py), and retargeting onto the avatar's neutral mesh relative to the
//   driver's first frame (sdk/mesh_motion.py retarget_mesh).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "constants.h"

namespace talkinghead {

// sdk/smoothing.py OneEuroParams (defaults from constants.h); min_cutoff == 0 turns
// smoothing off. Lips and eyelids (kFeatureMeshPoints) use scaled cutoffs.
struct OneEuroParams {
  double min_cutoff = kOneEuroMinCutoffHz;  // Hz
  double beta = kOneEuroBeta;               // 1 / (face sizes per second)
  double d_cutoff = kOneEuroDCutoffHz;      // Hz
};

// One driver (one face) of one avatar. Not thread safe: the caller serialises.
class Driver {
 public:
  // Forget the smoothing state and the driver's reference face: the next frame is the new
  // reference, and timestamps may start again.
  void reset();
  // New parameters; also resets, as the smoothing state belongs to the old ones.
  void set_params(const OneEuroParams& p) {
    params_ = p;
    reset();
  }
  const OneEuroParams& params() const { return params_; }
  bool has_last_timestamp() const { return has_state_; }
  int64_t last_timestamp_ms() const { return t_ms_; }

  // One frame. mesh: n points of `dims` (2 or 3) floats, normalised as MediaPipe's
  // NormalizedLandmark (x by width, y by height, z by width); avatar_mesh: 478 x 3 doubles,
  // crop px. Writes the target mesh, 478 x 3 float32 crop px of the avatar, to `out`. The
  // caller has checked the arguments (finite values, n in {468, 478}, increasing
  // timestamp). Returns false, with *error set and the state unchanged, when the driver's
  // face is degenerate.
  bool step(const float* mesh, int n, int dims, int width, int height, int64_t t_ms,
            const double* avatar_mesh, float* out, std::string* error);

 private:
  OneEuroParams params_;
  bool has_state_ = false;
  int64_t t_ms_ = 0;
  std::vector<double> x_, dx_;  // filtered x, y, z of every mesh point, and their speeds
  std::vector<double> nx_, ndx_;  // this frame's filter state, kept only on success
  std::vector<float> px_;       // this frame's points in px (scratch)
  bool has_reference_ = false;
  std::vector<double> reference_;  // the driver's reference mesh, px (478 x 3)
  std::vector<double> frame_, target_;  // scratch
};

}  // namespace talkinghead
