// The warp of warp and refine: the C++ port of sdk/warp.py (per frame) and of
// sdk/mesh_motion.py's retarget_mesh, matching the Python SDK within 1 level.
//
// A pack's rig.safetensors holds what the warp needs of one enrolled face (WarpRig). Per
// frame only the target mesh changes: target_points moves the anchors with the head,
// Warper::warp rasterises the rig's triangles at the target pose (z-tested, the same
// inclusion, depth and tie rules as numpy) and samples the source photo bilinearly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "constants.h"
#include "pack.h"

namespace talkinghead {

// A rig's first kMeshPoints points are MediaPipe's mesh with irises. The depth key's
// triangle bits, the interior triangle flags and the colour a stretched mouth blends
// toward (kRigTriangleBits, kEyeInterior, kMouthInterior, kMouthRgb) are in constants.h.
constexpr int kRigMeshPoints = kMeshPoints;
constexpr int kRigMaxPoints = 1 << 16;        // mesh + anchors (a rig has about 560)
constexpr int kRigMaxTriangles = 1 << kRigTriangleBits;
enum RigKind : uint8_t { kMesh = 0, kHead = 1, kHalf = 2, kFixed = 3 };

// sdk/warp.py WarpRig: arrays as the safetensors file stores them.
struct WarpRig {
  int size = 0;                    // S: the source crop is S x S
  std::vector<uint8_t> source;     // S*S*3 RGB
  std::vector<float> points;       // N*3 crop px (x, y, z); the first 478 are the mesh
  std::vector<uint8_t> kinds;      // N: RigKind
  std::vector<int32_t> triangles;  // M*3 indices into points
  std::vector<uint8_t> interior;   // M: kEyeInterior, kMouthInterior, or 0 elsewhere
  int num_points() const { return int(kinds.size()); }
  int num_triangles() const { return int(interior.size()); }
};

// Parse and validate rig.safetensors (8-byte little-endian header length, JSON header,
// raw little-endian data): every tensor's dtype, shape and byte range, tensors tiling the
// data exactly, finite points, kinds in 0..3, triangle indices below N. `size` is the
// manifest's resolution, which the source crop must have. `where` names the file.
Failure parse_rig(const std::vector<uint8_t>& data, int size, const std::string& where, WarpRig* out);

// sdk/warp.py rigid_fit: the least-squares similarity dst ~= s * R @ src + t over k
// corresponding 3D points (row-major k x 3), R a proper rotation (Horn's quaternion
// method). Returns false when src has no spread (all points coincide).
bool rigid_fit(const double* src, const double* dst, int k, double* s, double r[9], double t[3]);

// The per-frame warp of one rig, with its scratch buffers (not thread safe).
class Warper {
 public:
  explicit Warper(const WarpRig* rig);
  int size() const { return size_; }
  // sdk/warp.py target_points: all control points at the pose of `mesh` (478 x 3 crop px,
  // finite). Writes N x 3 doubles to `out`.
  void target_points(const double* mesh, double* out) const;
  // sdk/warp.py warp_image of the rig's source to `dst` (N x 3): S*S*3 RGB and S*S
  // validity bytes.
  void warp(const double* dst, uint8_t* rgb, uint8_t* validity);
  // Both: the warp to `mesh`.
  void warp_to(const double* mesh, uint8_t* rgb, uint8_t* validity);

 private:
  const WarpRig* rig_;
  int size_;
  std::vector<double> src_;        // points as float64, N*3
  std::vector<double> src_area2_;  // per triangle, the source's doubled signed area
  std::vector<double> dst_;        // scratch: target points
  std::vector<int64_t> best_;      // scratch: per pixel, the winning depth key
  std::vector<double> area2_, inv_;  // scratch: per triangle, its doubled area and inverse
};

// sdk/mesh_motion.py retarget_mesh: the driver's motion from `reference` to `frame`
// (478 x 3, its px) carried onto `avatar` (478 x 3, crop px); writes 478 x 3 doubles.
// Returns false, with *error set, when the driver's stable points are degenerate.
bool retarget_mesh(const double* frame, const double* reference, const double* avatar, double* out,
                   std::string* error);

// sdk/warp.py refiner_input: warped RGB, the landmark image and validity (uint8) as the
// (7, S, S) float32 input of the refiner, v / 127.5 - 1.
void refiner_input(const uint8_t* warped, const uint8_t* landmarks, const uint8_t* validity,
                   int size, float* chw);

}  // namespace talkinghead
