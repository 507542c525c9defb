/*
 * talkinghead_selftest: drives the C ABI through good and bad input, in plain C (which
 * also proves talkinghead.h is valid C). Built with -DTALKINGHEAD_ASAN=ON it is the
 * AddressSanitizer run of the native tests.
 *
 *   talkinghead_selftest GOOD_PACK [PACK EXPECTED_STATUS_NAME]...
 *
 * GOOD_PACK gets the full round of checks, th_self_check included; each further PACK is
 * opened (fp32) and must give EXPECTED_STATUS_NAME, e.g. TH_ERR_INTEGRITY (or TH_OK). An
 * EXPECTED of the form self_check=NAME[|NAME...] means: the pack opens, and th_self_check
 * on it returns one of the NAMEs (packs whose .bpte is broken). Prints one line per failed
 * check and a summary; exit status 0 when all pass.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "talkinghead.h"

static int g_checks = 0, g_failures = 0;

static void expect(th_status got, th_status want, const char* what) {
  ++g_checks;
  if (got != want) {
    ++g_failures;
    printf("FAIL %s: got %s, want %s (%s)\n", what, th_status_name(got), th_status_name(want),
           th_last_error());
  } else if (want != TH_OK && th_last_error()[0] == '\0') {
    ++g_failures;
    printf("FAIL %s: %s without a message\n", what, th_status_name(got));
  }
}

static void check(int ok, const char* what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    printf("FAIL %s\n", what);
  }
}

struct render_job {
  th_avatar avatar;
  const float* mesh;
  size_t out_bytes;
  int failures;
};

static void* render_many(void* arg) {
  struct render_job* job = (struct render_job*)arg;
  uint8_t* out = (uint8_t*)malloc(job->out_bytes);
  for (int i = 0; i < 4; ++i) {
    if (th_render(job->avatar, job->mesh, TH_MESH_FLOATS, out, job->out_bytes) != TH_OK) {
      ++job->failures;
    }
  }
  free(out);
  return NULL;
}

static void* self_check_many(void* arg) {
  struct render_job* job = (struct render_job*)arg;
  for (int i = 0; i < 2; ++i) {
    int32_t cases = 0;
    double max_abs = -1.0;
    if (th_self_check(job->avatar, &cases, &max_abs) != TH_OK || cases < 1 || !(max_abs >= 0.0)) {
      ++job->failures;
    }
  }
  return NULL;
}

static void bad_arguments(const char* pack) {
  th_avatar a = 123;
  expect(th_open(NULL, "fp32", &a), TH_ERR_INVALID_ARGUMENT, "open NULL pack_dir");
  check(a == 0, "open failure sets the handle to 0");
  expect(th_open(pack, NULL, &a), TH_ERR_INVALID_ARGUMENT, "open NULL precision");
  expect(th_open(pack, "fp16", &a), TH_ERR_INVALID_ARGUMENT, "open unknown precision");
  expect(th_open(pack, "fp32", NULL), TH_ERR_INVALID_ARGUMENT, "open NULL out_avatar");
  expect(th_open("/nonexistent/pack", "fp32", &a), TH_ERR_PACK, "open missing folder");
  expect(th_close(0), TH_ERR_CLOSED, "close handle 0");
  expect(th_render(0, NULL, 0, NULL, 0), TH_ERR_CLOSED, "render handle 0");
  expect(th_warp(0, NULL, 0, NULL, 0, NULL, 0), TH_ERR_CLOSED, "warp handle 0");
  expect(th_neutral_mesh(0, NULL, 0), TH_ERR_INVALID_ARGUMENT, "neutral mesh NULL, handle 0");
  expect(th_set_watermark(0, 1), TH_ERR_CLOSED, "set watermark handle 0");
  expect(th_set_watermark(0, 2), TH_ERR_INVALID_ARGUMENT, "set watermark 2, handle 0");
  uint32_t id = 0, code = 0;
  expect(th_watermark_payload(0, &id, &code), TH_ERR_CLOSED, "payload handle 0");
  int32_t cases = 0;
  double max_abs = 0.0;
  expect(th_self_check(0, &cases, &max_abs), TH_ERR_CLOSED, "self-check handle 0");
  expect(th_self_check(0, NULL, &max_abs), TH_ERR_INVALID_ARGUMENT, "self-check NULL cases, handle 0");
  expect(th_watermark_payload(0, NULL, NULL), TH_ERR_INVALID_ARGUMENT, "payload NULLs, handle 0");
  expect(th_drive_reset(0), TH_ERR_CLOSED, "drive reset handle 0");
  expect(th_set_smoothing(0, 1.0, 30.0, 1.0), TH_ERR_CLOSED, "smoothing handle 0");

  float lm[TH_LANDMARK_FLOATS];
  for (int i = 0; i < TH_LANDMARK_FLOATS; ++i) lm[i] = 10.0f + (float)i * 0.3f;
  uint8_t img[32 * 32 * 3];
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 32, 0.0, img, sizeof img), TH_OK, "rasterize");
  expect(th_rasterize(NULL, TH_LANDMARK_FLOATS, 32, 0.0, img, sizeof img), TH_ERR_INVALID_ARGUMENT,
         "rasterize NULL landmarks");
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 32, 0.0, NULL, sizeof img), TH_ERR_INVALID_ARGUMENT,
         "rasterize NULL out");
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 32, 0.0, img, sizeof img - 1),
         TH_ERR_INVALID_ARGUMENT, "rasterize short out");
  expect(th_rasterize(lm, 135, 32, 0.0, img, sizeof img), TH_ERR_INVALID_ARGUMENT,
         "rasterize 135 floats");
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 8, 0.0, img, 8 * 8 * 3), TH_ERR_INVALID_ARGUMENT,
         "rasterize size 8");
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 32, -1.0, img, sizeof img), TH_ERR_INVALID_ARGUMENT,
         "rasterize negative thickness");
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 32, NAN, img, sizeof img), TH_ERR_INVALID_ARGUMENT,
         "rasterize NaN thickness");
  lm[7] = NAN;
  expect(th_rasterize(lm, TH_LANDMARK_FLOATS, 32, 0.0, img, sizeof img), TH_ERR_INVALID_LANDMARKS,
         "rasterize NaN landmark");
}

/* Whether two meshes agree within `tol` px everywhere. */
static int meshes_close(const float* a, const float* b, float tol) {
  for (int i = 0; i < TH_MESH_FLOATS; ++i) {
    if (!(fabsf(a[i] - b[i]) <= tol)) return 0;
  }
  return 1;
}

/* th_drive: a MediaPipe mesh in (the avatar's own face, as a tracker in a 640 x 480 image
   would report it), a frame and its target mesh out; every bad argument. */
static void drive_checks(th_avatar a, const float* neutral, size_t n) {
  static float mesh[TH_MESH_FLOATS];
  const size_t floats = TH_MESH_FLOATS;
  for (int i = 0; i < TH_MESH_POINTS; ++i) {
    mesh[3 * i] = (neutral[3 * i] + 150.0f) / 640.0f;
    mesh[3 * i + 1] = (neutral[3 * i + 1] + 80.0f) / 480.0f;
    mesh[3 * i + 2] = neutral[3 * i + 2] / 640.0f;
  }
  uint8_t* rgb = (uint8_t*)malloc(n);
  uint8_t* rgb2 = (uint8_t*)malloc(n);
  static float out[TH_MESH_FLOATS], second[TH_MESH_FLOATS];
  expect(th_drive(a, mesh, floats, 640, 480, 0, rgb, n, out, TH_MESH_FLOATS), TH_OK, "drive the reference frame");
  check(meshes_close(out, neutral, 1e-3f), "the driver's first frame gives the neutral mesh");
  expect(th_render(a, out, TH_MESH_FLOATS, rgb2, n), TH_OK, "render the driven mesh");
  check(memcmp(rgb, rgb2, n) == 0, "th_drive's frame is th_render's of its target mesh");
  for (int i = 0; i < TH_MESH_POINTS; ++i) mesh[3 * i] += 0.01f; /* the head moves right */
  expect(th_drive(a, mesh, floats, 640, 480, 33, rgb, n, second, TH_MESH_FLOATS), TH_OK, "drive a frame");
  check(!meshes_close(out, second, 1.0f), "a moved mesh moves the avatar");
  expect(th_drive(a, mesh, floats, 640, 480, 50, rgb, n, NULL, 0), TH_OK, "drive without the target mesh");
  memcpy(out, second, sizeof out);
  memcpy(rgb2, rgb, n);
  expect(th_drive(a, mesh, floats, 640, 480, 50, rgb, n, second, TH_MESH_FLOATS), TH_ERR_TIMESTAMP,
         "drive the same timestamp again");
  expect(th_drive(a, mesh, floats, 640, 480, 10, rgb, n, second, TH_MESH_FLOATS), TH_ERR_TIMESTAMP,
         "drive an earlier timestamp");
  check(memcmp(out, second, sizeof out) == 0 && memcmp(rgb, rgb2, n) == 0,
        "a failed drive leaves its outputs alone");
  expect(th_drive(a, NULL, floats, 640, 480, 66, rgb, n, NULL, 0), TH_ERR_INVALID_ARGUMENT, "drive NULL mesh");
  expect(th_drive(a, mesh, floats, 640, 480, 66, NULL, n, NULL, 0), TH_ERR_INVALID_ARGUMENT, "drive NULL out");
  expect(th_drive(a, mesh, floats - 3, 640, 480, 66, rgb, n, NULL, 0), TH_ERR_INVALID_ARGUMENT,
         "drive 477 points");
  expect(th_drive(a, mesh, 68 * 2, 640, 480, 66, rgb, n, NULL, 0), TH_ERR_INVALID_ARGUMENT, "drive 68 points");
  expect(th_drive(a, mesh, floats, 640, 480, 66, rgb, n - 1, NULL, 0), TH_ERR_INVALID_ARGUMENT, "drive short out");
  expect(th_drive(a, mesh, floats, 640, 480, 66, rgb, n, out, TH_MESH_FLOATS - 1), TH_ERR_INVALID_ARGUMENT,
         "drive short target mesh");
  expect(th_drive(a, mesh, floats, 0, 480, 66, rgb, n, NULL, 0), TH_ERR_INVALID_ARGUMENT, "drive width 0");
  expect(th_drive(a, mesh, floats, 640, 70000, 66, rgb, n, NULL, 0), TH_ERR_INVALID_ARGUMENT,
         "drive height 70000");
  const float saved = mesh[3 * 100 + 1];
  mesh[3 * 100 + 1] = NAN;
  expect(th_drive(a, mesh, floats, 640, 480, 66, rgb, n, NULL, 0), TH_ERR_INVALID_LANDMARKS, "drive NaN y");
  mesh[3 * 100 + 1] = saved;
  mesh[3 * 100 + 2] = INFINITY;
  expect(th_drive(a, mesh, floats, 640, 480, 66, rgb, n, NULL, 0), TH_ERR_INVALID_LANDMARKS, "drive inf z");
  mesh[3 * 100 + 2] = neutral[3 * 100 + 2] / 640.0f;
  expect(th_drive(a, mesh, floats, 640, 480, 66, rgb, n, NULL, 0), TH_OK, "drive after bad frames");

  expect(th_set_smoothing(a, -1.0, 30.0, 1.0), TH_ERR_INVALID_ARGUMENT, "smoothing min_cutoff -1");
  expect(th_set_smoothing(a, 1.0, -1.0, 1.0), TH_ERR_INVALID_ARGUMENT, "smoothing beta -1");
  expect(th_set_smoothing(a, 1.0, 30.0, 0.0), TH_ERR_INVALID_ARGUMENT, "smoothing d_cutoff 0");
  expect(th_set_smoothing(a, 0.0, 30.0, 1.0), TH_ERR_INVALID_ARGUMENT, "smoothing min_cutoff 0 alone");
  expect(th_set_smoothing(a, NAN, 30.0, 1.0), TH_ERR_INVALID_ARGUMENT, "smoothing NaN");
  expect(th_set_smoothing(a, 1.0, INFINITY, 1.0), TH_ERR_INVALID_ARGUMENT, "smoothing inf");
  expect(th_set_smoothing(a, 0.0, 0.0, 0.0), TH_OK, "smoothing off");
  /* A reset: timestamps start over, and the next frame is the new reference. */
  static float flat[TH_MESH_POINTS_NO_IRIS * 2];
  for (int i = 0; i < TH_MESH_POINTS_NO_IRIS * 2; ++i) flat[i] = 0.5f;
  expect(th_drive(a, flat, TH_MESH_POINTS_NO_IRIS * 2, 640, 480, 0, rgb, n, out, TH_MESH_FLOATS),
         TH_ERR_INVALID_LANDMARKS, "drive a degenerate reference frame");
  for (int i = 0; i < TH_MESH_POINTS_NO_IRIS; ++i) {
    flat[2 * i] = mesh[3 * i];
    flat[2 * i + 1] = mesh[3 * i + 1];
  }
  expect(th_drive(a, flat, TH_MESH_POINTS_NO_IRIS * 2, 640, 480, 0, rgb, n, out, TH_MESH_FLOATS), TH_OK,
         "drive 468 (x, y) points after a failed reference frame");
  check(meshes_close(out, neutral, 1e-3f), "the new reference frame gives the neutral mesh");
  for (int i = 0; i < TH_MESH_POINTS_NO_IRIS * 2; ++i) flat[i] = 0.5f;
  expect(th_drive(a, flat, TH_MESH_POINTS_NO_IRIS * 2, 640, 480, 5, rgb, n, out, TH_MESH_FLOATS),
         TH_ERR_INVALID_LANDMARKS, "drive a degenerate frame");
  expect(th_drive_reset(a), TH_OK, "drive reset");
  expect(th_set_smoothing(a, 1.0, 30.0, 1.0), TH_OK, "smoothing back on");
  /* Timestamps at the ends of int64, and two that a double cannot tell apart: finite output. */
  const int64_t stamps[] = {INT64_MIN, INT64_MIN + 1, 0, ((int64_t)1 << 60), ((int64_t)1 << 60) + 1,
                            INT64_MAX};
  for (size_t k = 0; k < sizeof stamps / sizeof stamps[0]; ++k) {
    for (int i = 0; i < TH_MESH_POINTS; ++i) mesh[3 * i] += 0.001f;
    expect(th_drive(a, mesh, floats, 640, 480, stamps[k], rgb, n, out, TH_MESH_FLOATS), TH_OK,
           "drive at an extreme timestamp");
    int finite = 1;
    for (int i = 0; i < TH_MESH_FLOATS; ++i) finite = finite && isfinite(out[i]);
    check(finite, "extreme timestamps give finite meshes");
  }
  expect(th_drive(a, mesh, floats, 640, 480, INT64_MAX, rgb, n, out, TH_MESH_FLOATS), TH_ERR_TIMESTAMP,
         "nothing comes after INT64_MAX");
  expect(th_drive_reset(a), TH_OK, "drive reset again");
  free(rgb);
  free(rgb2);
}

/* th_warp: the warp alone, and its bad arguments. */
static void warp_checks(th_avatar a, const float* neutral, int32_t size) {
  const size_t n = (size_t)size * (size_t)size;
  uint8_t* rgb = (uint8_t*)malloc(3 * n);
  uint8_t* valid = (uint8_t*)malloc(n);
  expect(th_warp(a, neutral, TH_MESH_FLOATS, rgb, 3 * n, valid, n), TH_OK, "warp to the neutral mesh");
  size_t full = 0;
  for (size_t i = 0; i < n; ++i) full += valid[i] == 255;
  check(full > n / 2, "the neutral warp is mostly valid");
  expect(th_warp(a, NULL, TH_MESH_FLOATS, rgb, 3 * n, valid, n), TH_ERR_INVALID_ARGUMENT, "warp NULL mesh");
  expect(th_warp(a, neutral, TH_MESH_FLOATS - 1, rgb, 3 * n, valid, n), TH_ERR_INVALID_ARGUMENT,
         "warp short mesh");
  expect(th_warp(a, neutral, TH_MESH_FLOATS, NULL, 3 * n, valid, n), TH_ERR_INVALID_ARGUMENT, "warp NULL rgb");
  expect(th_warp(a, neutral, TH_MESH_FLOATS, rgb, 3 * n, NULL, n), TH_ERR_INVALID_ARGUMENT,
         "warp NULL validity");
  expect(th_warp(a, neutral, TH_MESH_FLOATS, rgb, 3 * n, valid, n - 1), TH_ERR_INVALID_ARGUMENT,
         "warp short validity");
  static float bad[TH_MESH_FLOATS];
  memcpy(bad, neutral, sizeof bad);
  bad[200] = NAN;
  expect(th_warp(a, bad, TH_MESH_FLOATS, rgb, 3 * n, valid, n), TH_ERR_INVALID_LANDMARKS, "warp NaN");
  /* Far outside the image, or all in one point: no crash, the border anchors keep the frame. */
  for (int i = 0; i < TH_MESH_FLOATS; ++i) bad[i] = (i % 2 ? -3e38f : 3e38f);
  expect(th_warp(a, bad, TH_MESH_FLOATS, rgb, 3 * n, valid, n), TH_OK, "warp far outside the image");
  for (int i = 0; i < TH_MESH_FLOATS; ++i) bad[i] = 7.0f;
  expect(th_warp(a, bad, TH_MESH_FLOATS, rgb, 3 * n, valid, n), TH_OK, "warp a mesh in one point");
  free(rgb);
  free(valid);
}

static void good_pack(const char* pack, const char* precision) {
  char what[128];
  th_avatar a = 0;
  snprintf(what, sizeof what, "open %s", precision);
  expect(th_open(pack, precision, &a), TH_OK, what);
  if (a == 0) return;
  int32_t size = 0;
  expect(th_resolution(a, &size), TH_OK, "resolution");
  expect(th_resolution(a, NULL), TH_ERR_INVALID_ARGUMENT, "resolution NULL");
  check(size >= 16, "resolution >= 16");
  const size_t n = (size_t)size * (size_t)size * 3;
  uint8_t* out = (uint8_t*)malloc(n + 1);
  static float lm[TH_MESH_FLOATS]; /* the neutral mesh */
  expect(th_neutral_mesh(a, lm, TH_MESH_FLOATS), TH_OK, "neutral mesh");
  expect(th_neutral_mesh(a, lm, 10), TH_ERR_INVALID_ARGUMENT, "neutral mesh short");
  expect(th_neutral_mesh(a, NULL, TH_MESH_FLOATS), TH_ERR_INVALID_ARGUMENT, "neutral mesh NULL");

  memset(out, 0, n);
  expect(th_render(a, lm, TH_MESH_FLOATS, out, n), TH_OK, "render neutral");
  size_t lit = 0;
  for (size_t i = 0; i < n; ++i) lit += out[i] != 0;
  check(lit > n / 2, "a rendered face is mostly non-black");

  /* Marked by default; th_set_watermark(0) renders the same face unmarked. The mark adds
     the same small change to R, G and B (unless clipped at 0 or 255). */
  uint8_t* plain = (uint8_t*)malloc(n);
  expect(th_set_watermark(a, 0), TH_OK, "watermark off");
  expect(th_render(a, lm, TH_MESH_FLOATS, plain, n), TH_OK, "render unmarked");
  expect(th_set_watermark(a, 1), TH_OK, "watermark on");
  size_t changed = 0, grey = 0;
  int worst = 0;
  for (size_t i = 0; i < n; i += 3) {
    int d[3];
    for (int c = 0; c < 3; ++c) {
      d[c] = (int)out[i + c] - (int)plain[i + c];
      if (abs(d[c]) > worst) worst = abs(d[c]);
    }
    changed += d[0] != 0;
    grey += d[0] == d[1] && d[1] == d[2];
  }
  check(changed > n / 3 / 4, "the watermark changes many pixels");
  check(worst > 0 && worst <= 32, "the watermark changes pixels by a few grey levels");
  check(grey > n / 3 * 9 / 10, "the watermark changes R, G and B alike");
  memset(plain, 0, n);
  expect(th_render(a, lm, TH_MESH_FLOATS, plain, n), TH_OK, "render marked again");
  check(memcmp(plain, out, n) == 0, "marking is deterministic");
  expect(th_set_watermark(a, 2), TH_ERR_INVALID_ARGUMENT, "watermark enabled=2");
  expect(th_set_watermark(a, -1), TH_ERR_INVALID_ARGUMENT, "watermark enabled=-1");
  uint32_t pack_id = 0xFFFFFFFFu, version = 0xFFFFFFFFu;
  expect(th_watermark_payload(a, &pack_id, &version), TH_OK, "watermark payload");
  int major = 0, minor = 0, patch = 0;
  sscanf(th_version(), "%d.%d.%d", &major, &minor, &patch);
  check(pack_id < (1u << 24), "pack id fits 24 bits");
  check(version == (uint32_t)(((major & 3) << 6) | ((minor & 7) << 3) | (patch & 7)),
        "version code of th_version()");
  expect(th_watermark_payload(a, NULL, &version), TH_ERR_INVALID_ARGUMENT, "payload NULL pack id");
  expect(th_watermark_payload(a, &pack_id, NULL), TH_ERR_INVALID_ARGUMENT, "payload NULL version");
  drive_checks(a, lm, n);
  warp_checks(a, lm, size);

  expect(th_render(a, NULL, TH_MESH_FLOATS, out, n), TH_ERR_INVALID_ARGUMENT, "render NULL mesh");
  expect(th_render(a, lm, TH_MESH_FLOATS - 1, out, n), TH_ERR_INVALID_ARGUMENT, "render 1433 floats");
  expect(th_render(a, lm, TH_LANDMARK_FLOATS, out, n), TH_ERR_INVALID_ARGUMENT, "render 68 landmarks");
  expect(th_render(a, lm, TH_MESH_FLOATS, NULL, n), TH_ERR_INVALID_ARGUMENT, "render NULL out");
  expect(th_render(a, lm, TH_MESH_FLOATS, out, n - 1), TH_ERR_INVALID_ARGUMENT, "render short out");
  expect(th_render(a, lm, TH_MESH_FLOATS, out, n + 1), TH_ERR_INVALID_ARGUMENT, "render long out");

  static float bad[TH_MESH_FLOATS];
  memcpy(bad, lm, sizeof bad);
  bad[40] = NAN;
  expect(th_render(a, bad, TH_MESH_FLOATS, out, n), TH_ERR_INVALID_LANDMARKS, "render NaN");
  bad[40] = INFINITY;
  expect(th_render(a, bad, TH_MESH_FLOATS, out, n), TH_ERR_INVALID_LANDMARKS, "render inf");
  for (int i = 0; i < TH_MESH_FLOATS; ++i) bad[i] = (i % 2 ? -3e38f : 3e38f);
  expect(th_render(a, bad, TH_MESH_FLOATS, out, n), TH_OK, "render far outside the image");

  int32_t files = -1;
  expect(th_verify_files(a, &files), TH_OK, "verify every listed file");
  check(files >= 1, "verify counts the files");
  expect(th_verify_files(a, NULL), TH_ERR_INVALID_ARGUMENT, "verify NULL count");

  /* The pack's bundled test cases, run through the loaded model. */
  expect(th_render(a, lm, TH_MESH_FLOATS, out, n), TH_OK, "render before self-check");
  int32_t cases = -1;
  double max_abs = -1.0;
  expect(th_self_check(a, &cases, &max_abs), TH_OK, "self-check");
  check(cases >= 1 && max_abs >= 0.0 && max_abs < 0.1, "self-check reports its cases and error");
  expect(th_self_check(a, NULL, &max_abs), TH_ERR_INVALID_ARGUMENT, "self-check NULL cases");
  expect(th_self_check(a, &cases, NULL), TH_ERR_INVALID_ARGUMENT, "self-check NULL max error");
  memset(plain, 0, n);
  expect(th_render(a, lm, TH_MESH_FLOATS, plain, n), TH_OK, "render after self-check");
  check(memcmp(plain, out, n) == 0, "a self-check leaves renders unchanged");

  /* Two threads rendering on one handle, a third self-checking: the library serialises
     them. */
  pthread_t threads[3];
  struct render_job jobs[3] = {{a, lm, n, 0}, {a, lm, n, 0}, {a, lm, n, 0}};
  for (int t = 0; t < 2; ++t) pthread_create(&threads[t], NULL, render_many, &jobs[t]);
  pthread_create(&threads[2], NULL, self_check_many, &jobs[2]);
  for (int i = 0; i < 8; ++i) th_set_watermark(a, i % 2 == 0); /* while they render */
  for (int t = 0; t < 3; ++t) pthread_join(threads[t], NULL);
  check(jobs[0].failures == 0 && jobs[1].failures == 0, "concurrent renders on one handle");
  check(jobs[2].failures == 0, "self-checks while rendering on one handle");

  free(plain);
  expect(th_close(a), TH_OK, "close");
  expect(th_self_check(a, &cases, &max_abs), TH_ERR_CLOSED, "self-check after close");
  expect(th_render(a, lm, TH_MESH_FLOATS, out, n), TH_ERR_CLOSED, "render after close");
  expect(th_resolution(a, &size), TH_ERR_CLOSED, "resolution after close");
  expect(th_neutral_mesh(a, lm, TH_MESH_FLOATS), TH_ERR_CLOSED, "neutral after close");
  expect(th_warp(a, lm, TH_MESH_FLOATS, out, n, out, (size_t)size * (size_t)size), TH_ERR_CLOSED,
         "warp after close");
  expect(th_set_watermark(a, 0), TH_ERR_CLOSED, "set watermark after close");
  expect(th_watermark_payload(a, &pack_id, &version), TH_ERR_CLOSED, "payload after close");
  expect(th_drive(a, lm, TH_LANDMARK_FLOATS, 640, 480, 99, out, n, NULL, 0),
         TH_ERR_INVALID_ARGUMENT, "drive a wrong size after close (arguments first)");
  expect(th_drive(a, lm, TH_MESH_FLOATS, 640, 480, 99, out, n, NULL, 0), TH_ERR_CLOSED,
         "drive after close");
  expect(th_drive_reset(a), TH_ERR_CLOSED, "drive reset after close");
  expect(th_verify_files(a, &cases), TH_ERR_CLOSED, "verify after close");
  expect(th_set_smoothing(a, 1.0, 30.0, 1.0), TH_ERR_CLOSED, "smoothing after close");
  expect(th_close(a), TH_ERR_CLOSED, "close twice");
  free(out);
}

/* Whether `name` is one of the '|'-separated names in `list`. */
static int one_of(const char* name, const char* list) {
  size_t len = strlen(name);
  for (const char* p = list; *p;) {
    const char* end = strchr(p, '|');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == len && strncmp(p, name, n) == 0) return 1;
    p += n + (end ? 1 : 0);
  }
  return 0;
}

/* A pack that opens, whose th_self_check must return one of `want` ('|'-separated). */
static void self_check_pack(const char* pack, const char* want) {
  th_avatar a = 0;
  char what[512];
  snprintf(what, sizeof what, "open %s for a self-check", pack);
  expect(th_open(pack, "fp32", &a), TH_OK, what);
  if (a == 0) return;
  int32_t cases = -1;
  double max_abs = -1.0;
  th_status s = th_self_check(a, &cases, &max_abs);
  ++g_checks;
  int ok = one_of(th_status_name(s), want) && (s == TH_OK || th_last_error()[0] != '\0');
  if (s == TH_OK || s == TH_ERR_SELF_CHECK) ok = ok && cases >= 1 && !(max_abs < 0.0);
  if (!ok) {
    ++g_failures;
    printf("FAIL self-check %s: got %s (%s), want %s\n", pack, th_status_name(s), th_last_error(),
           want);
  }
  th_close(a);
}

static void other_pack(const char* pack, const char* want) {
  char what[512];
  th_avatar a = 77;
  const char* prefix = "self_check=";
  if (strncmp(want, prefix, strlen(prefix)) == 0) {
    self_check_pack(pack, want + strlen(prefix));
    return;
  }
  th_status s = th_open(pack, "fp32", &a);
  snprintf(what, sizeof what, "open %s", pack);
  ++g_checks;
  int ok = strcmp(th_status_name(s), want) == 0 &&
           (s == TH_OK ? a != 0 : a == 0 && th_last_error()[0] != '\0');
  if (!ok) {
    ++g_failures;
    printf("FAIL %s: got %s (%s), want %s\n", what, th_status_name(s), th_last_error(), want);
  }
  if (s == TH_OK) th_close(a);
}

int main(int argc, char** argv) {
  if (argc < 2 || argc % 2 != 0) {
    fprintf(stderr, "usage: %s GOOD_PACK [PACK EXPECTED_STATUS_NAME]...\n", argv[0]);
    return 2;
  }
  check(th_abi_version() == TH_ABI_VERSION, "ABI version matches the header");
  check(strlen(th_version()) > 0, "version string");
  check(strcmp(th_status_name(TH_ERR_INTEGRITY), "TH_ERR_INTEGRITY") == 0, "status names");
  bad_arguments(argv[1]);
  good_pack(argv[1], "fp32");
  good_pack(argv[1], "int8");
  for (int i = 2; i + 1 < argc; i += 2) other_pack(argv[i], argv[i + 1]);
  printf("%s: %d checks, %d failed\n", g_failures ? "FAILED" : "OK", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
