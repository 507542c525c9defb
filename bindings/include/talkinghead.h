/*
 * talkinghead.h: the C ABI of the talkinghead avatar runtime.
 *
 * Open an avatar pack (a folder holding manifest.json, the warp rig rig.safetensors and
 * ExecuTorch .pte refiners), then render one RGB frame per target face mesh: warp and
 * refine. Per frame the enrolled photo is warped to the target mesh (478 points, the same
 * triangles, anchors and z-test as talkinghead.sdk.warp, matching it within 1 level), the
 * mesh's 68 iBUG points are rasterised, and the refiner turns warped photo + landmarks +
 * validity into the frame. th_drive does the whole live path from a raw MediaPipe mesh.
 * th_self_check verifies the loaded model on the device against the pack's bundled test
 * cases (.bpte). Every call returns a th_status; on failure th_last_error() names what was
 * wrong. No call aborts on bad input.
 *
 * Provenance: like the Python SDK's Avatar, th_render marks every frame as synthetic
 * with an invisible watermark (about 2.45 grey levels RMS, PSNR >= 40 dB) carrying the
 * pack's 24-bit id and the library's version code; talkinghead.sdk.watermark.detect and
 * `talkinghead verify-media` read it. th_set_watermark(avatar, 0) is the explicit opt-out.
 *
 * Ownership:
 *   - The caller owns every buffer it passes in (meshes, landmarks, output pixels, paths).
 *     The library reads or writes them only during the call and keeps no pointer to them.
 *     Each buffer comes with its size in elements, which must be exactly the size the
 *     function documents (TH_ERR_INVALID_ARGUMENT otherwise).
 *   - The library owns an avatar from th_open until th_close. A handle is a number, not
 *     a pointer, and is never reused within a process: after th_close every call with it
 *     returns TH_ERR_CLOSED instead of touching freed memory.
 *   - Strings returned by the library are owned by it: th_version and th_status_name
 *     return static strings; th_last_error returns a thread-local string that stays
 *     valid until the next th_ call on the same thread.
 *
 * Threads: any function may be called from any thread. Calls on one handle are
 * serialised by the library (a render waits for a render already running on it);
 * different handles render in parallel. Closing a handle while another thread
 * renders on it is safe: the render finishes, then the avatar is freed.
 *
 * Conventions (same as the Python SDK):
 *   S:         the pack's resolution (th_resolution; 256 for packs made with the defaults).
 *   meshes:    478 points x (x, y, z) float32, interleaved [x0, y0, z0, x1, ...]
 *              (TH_MESH_FLOATS), in crop px of the avatar: pixel (row r, col c) covers
 *              [c, c+1) x [r, r+1), so its centre is at (c + 0.5, r + 0.5); z is in x's
 *              scale, smaller is nearer (MediaPipe's z times the image width).
 *   landmarks: 68 points x (x, y) float32, interleaved, the same px (th_rasterize only).
 *   frames:    S x S x 3 uint8 RGB, row-major, no padding.
 */
#ifndef TALKINGHEAD_H_
#define TALKINGHEAD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TH_API __declspec(dllexport)
#else
#define TH_API __attribute__((visibility("default")))
#endif

/* Bumped when a signature or a documented behaviour changes incompatibly. */
#define TH_ABI_VERSION 2
#define TH_NUM_LANDMARKS 68
/* Number of floats th_rasterize reads: 68 points x (x, y). */
#define TH_LANDMARK_FLOATS 136
/* MediaPipe FaceLandmarker's mesh: 478 points (468 without the irises). */
#define TH_MESH_POINTS 478
#define TH_MESH_POINTS_NO_IRIS 468
/* Number of floats of a target mesh (th_render, th_warp, th_neutral_mesh): 478 x (x, y, z). */
#define TH_MESH_FLOATS 1434

/* An opened avatar. 0 is never a valid handle. */
typedef uint64_t th_avatar;

typedef enum th_status {
  TH_OK = 0,
  TH_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad precision name, wrong buffer size */
  TH_ERR_INVALID_LANDMARKS = 2, /* NaN or infinite mesh or landmark coordinates, or a
                                   degenerate driver face */
  TH_ERR_PACK = 3,           /* missing or malformed manifest or rig, missing or unsafe file */
  TH_ERR_INTEGRITY = 4,      /* a file does not match the sha256 in the manifest */
  TH_ERR_UNSUPPORTED = 5,    /* pack schema newer than this library or older than 3 (the
                                old generator), no such model, or frames too small
                                (< 32 px) to watermark */
  TH_ERR_MODEL = 6,          /* not an ExecuTorch program, truncated, or wrong shapes */
  TH_ERR_RUNTIME = 7,        /* the ExecuTorch runtime failed to load or run the model */
  TH_ERR_CLOSED = 8,         /* the handle was closed (or never opened) */
  TH_ERR_NO_MEMORY = 9,      /* an allocation failed */
  TH_ERR_INTERNAL = 10,      /* a bug: please report the message */
  TH_ERR_SELF_CHECK = 11,    /* th_self_check: the model is off its bundled expected outputs */
  TH_ERR_TIMESTAMP = 12,     /* th_drive: the timestamp did not increase */
  TH_ERR_SIGNATURE = 13      /* th_open_signed: unsigned, or not signed by a trusted key */
} th_status;

/* The library version, e.g. "0.1.0" (static string). */
TH_API const char* th_version(void);

/* TH_ABI_VERSION of the library actually loaded; compare with the header's. */
TH_API int32_t th_abi_version(void);

/* A short constant name for a status, e.g. "TH_ERR_INTEGRITY" (static string). */
TH_API const char* th_status_name(th_status status);

/* The message of the last failed call on this thread ("" after a successful call). */
TH_API const char* th_last_error(void);

/*
 * Open the pack in folder `pack_dir` and load its ExecuTorch model of `precision`
 * ("fp32" or "int8") and its warp rig (generator.rig). The manifest is validated; the
 * model's and the rig's sha256 are checked against the very bytes that are then parsed.
 * The model must take float32 [1, 7, S, S] and return float32 [1, 3, S, S]; the rig's
 * source crop must be S x S. On success *out_avatar is set; on failure it is set to 0.
 */
TH_API th_status th_open(const char* pack_dir, const char* precision, th_avatar* out_avatar);

/*
 * th_open for packs that must be signed: manifest.sig must hold an Ed25519 signature
 * (libsodium) of manifest.json's exact bytes by one of `num_keys` trusted public keys,
 * 32 bytes each, concatenated at `public_keys` (`talkinghead keygen` writes them in hex).
 * The manifest is parsed from the very bytes whose signature was checked, and the model's
 * sha256 comes from it, so every byte loaded is covered by the signature.
 * Errors: as th_open; NULL public_keys or num_keys == 0 -> TH_ERR_INVALID_ARGUMENT;
 * no manifest.sig, a malformed one, or no trusted key's signature -> TH_ERR_SIGNATURE.
 */
TH_API th_status th_open_signed(const char* pack_dir, const char* precision,
                                const uint8_t* public_keys, size_t num_keys,
                                th_avatar* out_avatar);

/* The model's side S in px: inputs and outputs are S x S. */
TH_API th_status th_resolution(th_avatar avatar, int32_t* out_size);

/* The enrolled face at rest (the rig's mesh): writes TH_MESH_FLOATS floats (crop px) to
 * `out`; `out_floats` must be TH_MESH_FLOATS. */
TH_API th_status th_neutral_mesh(th_avatar avatar, float* out, size_t out_floats);

/*
 * Render one frame at the pose of `mesh` (TH_MESH_FLOATS floats, crop px): warp the
 * enrolled photo to it, rasterise its 68 iBUG points, run the refiner, watermark the
 * frame (unless th_set_watermark turned that off), write S*S*3 bytes of RGB to `out_rgb`.
 * `mesh_floats` and `out_bytes` are the sizes of the caller's buffers and must be exactly
 * TH_MESH_FLOATS and S*S*3. Points may lie outside the image but must be finite
 * (TH_ERR_INVALID_LANDMARKS otherwise). Equals talkinghead.sdk.avatar.Avatar.render of the
 * same mesh within 1 level. A pack of S < 32 px cannot carry the mark: with marking on,
 * its renders return TH_ERR_UNSUPPORTED.
 */
TH_API th_status th_render(th_avatar avatar, const float* mesh, size_t mesh_floats,
                           uint8_t* out_rgb, size_t out_bytes);

/*
 * Only the warp: the enrolled photo moved to `mesh` (as th_render, TH_MESH_FLOATS floats),
 * S*S*3 bytes of RGB to `out_rgb` and S*S bytes of validity to `out_validity` (255 where
 * the warp had source pixels, 0 where it had none, lower inside the mouth and eyes as far
 * as they were stretched): talkinghead.sdk.warp.warp_to within 1 level. Not a model
 * frame, so never watermarked. Serialised with th_render on the same handle.
 */
TH_API th_status th_warp(th_avatar avatar, const float* mesh, size_t mesh_floats,
                         uint8_t* out_rgb, size_t out_bytes, uint8_t* out_validity,
                         size_t validity_bytes);

/*
 * Mark frames (enabled = 1, the default after th_open) or stop marking them
 * (enabled = 0): the opt-out, as AvatarOptions(watermark=False) in the Python SDK.
 * Frames rendered with marking off are not identifiable as synthetic; media made from
 * them should say so. Applies to renders that start after the call (a render already
 * running on the handle finishes first). Errors: enabled not 0 or 1 ->
 * TH_ERR_INVALID_ARGUMENT (checked first); closed handle -> TH_ERR_CLOSED.
 */
TH_API th_status th_set_watermark(th_avatar avatar, int32_t enabled);

/*
 * What marked frames of this avatar carry, so an app can record it: the pack id (24 bits,
 * the same as the Python SDK's pack_id of the manifest) in *out_pack_id and the library's
 * version code (8 bits: 2 major, 3 minor, 3 patch) in *out_version_code. The caller owns
 * both; they are written only on success. Reported whether or not marking is on.
 * Errors: either pointer NULL -> TH_ERR_INVALID_ARGUMENT (checked first); closed handle
 * -> TH_ERR_CLOSED.
 */
TH_API th_status th_watermark_payload(th_avatar avatar, uint32_t* out_pack_id,
                                      uint32_t* out_version_code);

/*
 * Check every file the pack's manifest lists (its `files`: every runtime's models, bundled
 * programs, parity vectors) against its sha256, as `talkinghead verify` does; th_open
 * checks only the model it loads. Call it once, e.g. after installing or downloading a
 * pack; it reads every listed file (a few MB for a pack from `talkinghead export`) and
 * does not hold up renders on the handle. On success *out_files (caller-owned) is the
 * number of files checked. Errors: out_files NULL -> TH_ERR_INVALID_ARGUMENT (checked
 * first); closed handle -> TH_ERR_CLOSED; a listed file missing, a link, or not a regular
 * file -> TH_ERR_PACK; bytes not matching -> TH_ERR_INTEGRITY (th_last_error names the
 * first such file).
 */
TH_API th_status th_verify_files(th_avatar avatar, int32_t* out_files);

/*
 * Self-check: run the avatar's loaded model (the pack's .pte, the one th_render uses) on
 * the test cases of the ExecuTorch BundledProgram (.bpte) named by the model's manifest
 * entry `info.bundled`, and compare with their expected outputs (what the program gave on
 * the exporting machine) elementwise: |got - want| <= atol + rtol * |want|, atol and rtol from `info.bundled`.
 * Call it once after th_open, e.g. at install or first launch; it runs the model once per
 * test case (one in packs from `talkinghead export`). The .bpte is checked against the
 * manifest's sha256 before it is parsed, and parsed with bounds checks on every read.
 * On TH_OK and on TH_ERR_SELF_CHECK, *out_cases is the number of test cases run and
 * *out_max_abs_error the largest |got - want| over them (NaN if any value was NaN); the
 * caller owns both, and they are not written on other errors. Serialised with th_render on
 * the same handle.
 * Errors: either pointer NULL -> TH_ERR_INVALID_ARGUMENT (checked first); closed handle ->
 * TH_ERR_CLOSED; no `info.bundled` in the manifest entry -> TH_ERR_UNSUPPORTED; a malformed
 * `info.bundled` or a missing .bpte -> TH_ERR_PACK; .bpte bytes not matching the sha256 ->
 * TH_ERR_INTEGRITY; a malformed .bpte, no test suite for "forward", no or more than 1024
 * test cases, or a test case whose input is not one float32 [1, 7, S, S] tensor or whose
 * expected output is not one float32 [1, 3, S, S] tensor -> TH_ERR_MODEL; a bundle format newer than BP08 ->
 * TH_ERR_UNSUPPORTED; the model failing to run -> TH_ERR_RUNTIME; an
 * output off by more than the tolerance -> TH_ERR_SELF_CHECK (th_last_error names the
 * first such value).
 */
TH_API th_status th_self_check(th_avatar avatar, int32_t* out_cases, double* out_max_abs_error);

/*
 * Drive the avatar from MediaPipe face tracking: one tracked face of the driver (the
 * FaceLandmarker's mesh for one video frame) in, one finished frame out. This is what the
 * Python SDK's talkinghead.sdk.driver.MeshDriver does per frame, and equals it within 1
 * level:
 *   1. mesh to pixels: x * image_width, y * image_height, z * image_width (MediaPipe's
 *      NormalizedLandmark; z = 0 for a mesh of (x, y)); a 468-point mesh gets its 10 iris
 *      points as the mean of each eye's contour;
 *   2. One Euro smoothing of every coordinate, z included, speeds in face sizes per
 *      second (default min_cutoff 1 Hz, beta 30, d_cutoff 1 Hz, as OneEuroParams(); see
 *      th_set_smoothing; lips and eyelids rest at 2x min_cutoff and estimate speed at
 *      8x d_cutoff, so syllables and blinks keep up), as the SDK's FaceTracker smooths
 *      its meshes;
 *   3. retargeting (talkinghead.sdk.mesh_motion.retarget_mesh): the driver's head motion
 *      and expression relative to its reference frame carried onto the avatar's neutral
 *      mesh (th_neutral_mesh), rounded to float32;
 *   4. th_render of that target mesh: warp, landmarks, refiner, watermark.
 * The driver's reference frame is the first frame after th_open, th_drive_reset or
 * th_set_smoothing; that frame's target is th_neutral_mesh (within float rounding).
 *
 * mesh: `mesh_floats` floats, the mesh's points in order, each as (x, y, z) or (x, y), x
 * and y normalised by the image width and height. mesh_floats must be 478*3, 468*3, 478*2
 * or 468*2. image_width, image_height: the tracked image, px, in [1, 65536].
 * timestamp_ms: the frame's time, strictly greater than the previous th_drive's on this
 * avatar (until a reset). out_rgb: S*S*3 bytes (out_bytes), as th_render.
 * out_target_mesh: NULL, or TH_MESH_FLOATS floats (out_mesh_floats) that receive the target
 * mesh the frame was rendered at. Outputs are owned by the caller and written only on
 * success. When the tracker loses the face, keep showing the last frame (or render
 * th_neutral_mesh), and call th_drive_reset before a different person drives.
 * Errors: a NULL mesh or out_rgb, a size not listed, or out_mesh_floats not TH_MESH_FLOATS
 * with a non-NULL out_target_mesh -> TH_ERR_INVALID_ARGUMENT (checked first, then the
 * image size); closed handle -> TH_ERR_CLOSED; a NaN or infinite coordinate ->
 * TH_ERR_INVALID_LANDMARKS; a timestamp not after the previous one -> TH_ERR_TIMESTAMP; a
 * reference or current frame whose stable points (forehead, nose, temples, eye corners)
 * coincide -> TH_ERR_INVALID_LANDMARKS; then th_render's errors. A call that fails before
 * rendering leaves the driver's state as it was.
 */
TH_API th_status th_drive(th_avatar avatar, const float* mesh, size_t mesh_floats,
                          int32_t image_width, int32_t image_height, int64_t timestamp_ms,
                          uint8_t* out_rgb, size_t out_bytes, float* out_target_mesh,
                          size_t out_mesh_floats);

/* Forget the driver: the next th_drive frame is the new neutral, timestamps start over. */
TH_API th_status th_drive_reset(th_avatar avatar);

/*
 * The One Euro filter of th_drive (units as talkinghead.sdk.smoothing.OneEuroParams):
 * min_cutoff_hz > 0, beta >= 0, d_cutoff_hz > 0, all finite; or all three 0 to turn the
 * smoothing off. Also resets the driver, as th_drive_reset. Errors: other values ->
 * TH_ERR_INVALID_ARGUMENT (checked first); closed handle -> TH_ERR_CLOSED.
 */
TH_API th_status th_set_smoothing(th_avatar avatar, double min_cutoff_hz, double beta,
                                  double d_cutoff_hz);

/*
 * Only the rasteriser: draw the landmark image (coloured polylines on black) that
 * th_render feeds the refiner (channels 3-5), from 68 landmarks (TH_LANDMARK_FLOATS
 * floats, px; th_render takes them from the target mesh), into `out_rgb` (size*size*3
 * bytes). `size` >= 16;
 * `thickness` in px, or 0 for the default max(1, size / 64). Not a model frame, so
 * never watermarked.
 */
TH_API th_status th_rasterize(const float* landmarks, size_t landmark_floats, int32_t size,
                              double thickness, uint8_t* out_rgb, size_t out_bytes);

/* Release the avatar. Closing 0 or an already closed handle returns TH_ERR_CLOSED. */
TH_API th_status th_close(th_avatar avatar);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TALKINGHEAD_H_ */
