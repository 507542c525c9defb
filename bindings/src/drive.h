// Driving an avatar from MediaPipe face tracking: the port of what the Python SDK does
// between the FaceLandmarker and Avatar.render in a live session:
//   normalised mesh -> pixels (sdk/tracker.py), One Euro smoothing with speeds in face
//   sizes per second (sdk/smoothing.py, sdk/tracks.py), the 68 iBUG points
//   (sdk/landmarks.py), and relative retargeting onto the avatar's neutral face
//   (sdk/retarget.py, relative_motion against the driver's first frame).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace talkinghead {

constexpr int kMeshPoints = 478;         // FaceLandmarker with irises
constexpr int kMeshPointsNoIris = 468;   // the mesh without the 10 iris points

// Mesh vertex of each iBUG 68 point (sdk/landmarks.py MEDIAPIPE_TO_68).
extern const int kMeshTo68[68];

// sdk/smoothing.py OneEuroParams; min_cutoff == 0 turns smoothing off.
struct OneEuroParams {
  double min_cutoff = 1.0;  // Hz
  double beta = 30.0;       // 1 / (face sizes per second)
  double d_cutoff = 1.0;    // Hz
};

// One driver (one face) of one avatar. Not thread safe: the caller serialises.
class Driver {
 public:
  // Forget the smoothing state and the driver's neutral face: the next frame is the new
  // neutral, and timestamps may start again.
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
  // NormalizedLandmark (x by width, y by height); avatar_neutral: 136 floats, crop px.
  // Writes 136 floats (68 x (x, y), crop px of the avatar) to `out`. The caller has
  // checked the arguments (finite values, n in {468, 478}, increasing timestamp).
  // Returns false, with *error set, when the driver's neutral face is degenerate.
  bool step(const float* mesh, int n, int dims, int width, int height, int64_t t_ms,
            const float* avatar_neutral, float* out, std::string* error);

 private:
  OneEuroParams params_;
  bool has_state_ = false;
  int64_t t_ms_ = 0;
  std::vector<double> x_, dx_;  // filtered x, y of every mesh point, and their speeds
  std::vector<float> px_;       // this frame's points in px (scratch)
  bool has_neutral_ = false;
  double ref_[136] = {};        // the driver's neutral 68 points, px
  double scale_ = 0.0, rot_[4] = {};  // similarity taking ref_ onto the avatar's neutral
};

}  // namespace talkinghead
