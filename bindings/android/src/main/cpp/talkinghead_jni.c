/*
 * JNI glue for com.talkinghead.NativeBridge: the C ABI of talkinghead.h, one function
 * each. Failures throw com.talkinghead.TalkingHeadException(status, message).
 * Java arrays are copied in (meshes) or written in place (frames, target meshes); no
 * pointer into them outlives a call.
 */
#include <jni.h>
#include <stdint.h>

#include "talkinghead.h"

static void throw_status(JNIEnv* env, th_status status) {
  jclass cls = (*env)->FindClass(env, "com/talkinghead/TalkingHeadException");
  if (cls == NULL) return; /* NoClassDefFoundError is already pending */
  jmethodID ctor = (*env)->GetMethodID(env, cls, "<init>", "(ILjava/lang/String;)V");
  if (ctor == NULL) return;
  jstring message = (*env)->NewStringUTF(env, th_last_error());
  jobject error = (*env)->NewObject(env, cls, ctor, (jint)status, message);
  if (error != NULL) (*env)->Throw(env, (jthrowable)error);
}

/* Returns nonzero (and leaves an exception pending) when status is an error. */
static int failed(JNIEnv* env, th_status status) {
  if (status == TH_OK) return 0;
  throw_status(env, status);
  return 1;
}

JNIEXPORT jstring JNICALL Java_com_talkinghead_NativeBridge_version(JNIEnv* env, jclass cls) {
  (void)cls;
  return (*env)->NewStringUTF(env, th_version());
}

JNIEXPORT jlong JNICALL Java_com_talkinghead_NativeBridge_open(JNIEnv* env, jclass cls,
                                                               jstring pack_dir,
                                                               jstring precision) {
  (void)cls;
  const char* dir = pack_dir ? (*env)->GetStringUTFChars(env, pack_dir, NULL) : NULL;
  const char* prec = precision ? (*env)->GetStringUTFChars(env, precision, NULL) : NULL;
  th_avatar avatar = 0;
  th_status status = th_open(dir, prec, &avatar);
  if (dir) (*env)->ReleaseStringUTFChars(env, pack_dir, dir);
  if (prec) (*env)->ReleaseStringUTFChars(env, precision, prec);
  if (failed(env, status)) return 0;
  return (jlong)avatar;
}

/* public_keys: the trusted Ed25519 keys, 32 bytes each, concatenated. */
JNIEXPORT jlong JNICALL Java_com_talkinghead_NativeBridge_openSigned(JNIEnv* env, jclass cls,
                                                                     jstring pack_dir,
                                                                     jstring precision,
                                                                     jbyteArray public_keys) {
  (void)cls;
  jsize key_bytes = public_keys ? (*env)->GetArrayLength(env, public_keys) : 0;
  if (key_bytes == 0 || key_bytes % 32 != 0) {
    th_avatar none = 0;
    /* th_open_signed names the problem: no key. */
    failed(env, th_open_signed(NULL, NULL, NULL, 0, &none));
    return 0;
  }
  jbyte* keys = (*env)->GetByteArrayElements(env, public_keys, NULL);
  if (keys == NULL) return 0; /* OutOfMemoryError is pending */
  const char* dir = pack_dir ? (*env)->GetStringUTFChars(env, pack_dir, NULL) : NULL;
  const char* prec = precision ? (*env)->GetStringUTFChars(env, precision, NULL) : NULL;
  th_avatar avatar = 0;
  th_status status = th_open_signed(dir, prec, (const uint8_t*)keys, (size_t)key_bytes / 32, &avatar);
  if (dir) (*env)->ReleaseStringUTFChars(env, pack_dir, dir);
  if (prec) (*env)->ReleaseStringUTFChars(env, precision, prec);
  (*env)->ReleaseByteArrayElements(env, public_keys, keys, JNI_ABORT);
  if (failed(env, status)) return 0;
  return (jlong)avatar;
}

JNIEXPORT jint JNICALL Java_com_talkinghead_NativeBridge_resolution(JNIEnv* env, jclass cls,
                                                                    jlong avatar) {
  (void)cls;
  int32_t size = 0;
  if (failed(env, th_resolution((th_avatar)avatar, &size))) return 0;
  return (jint)size;
}

JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_neutralMesh(JNIEnv* env, jclass cls,
                                                                     jlong avatar, jfloatArray out) {
  (void)cls;
  float buf[TH_MESH_FLOATS];
  if (out == NULL || (*env)->GetArrayLength(env, out) != TH_MESH_FLOATS) {
    failed(env, th_neutral_mesh((th_avatar)avatar, NULL, 0));
    return;
  }
  if (failed(env, th_neutral_mesh((th_avatar)avatar, buf, TH_MESH_FLOATS))) return;
  (*env)->SetFloatArrayRegion(env, out, 0, TH_MESH_FLOATS, buf);
}

JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_render(JNIEnv* env, jclass cls,
                                                                jlong avatar, jfloatArray mesh,
                                                                jbyteArray out) {
  (void)cls;
  float points[TH_MESH_FLOATS];
  jsize n_mesh = mesh ? (*env)->GetArrayLength(env, mesh) : 0;
  if (n_mesh == TH_MESH_FLOATS) {
    (*env)->GetFloatArrayRegion(env, mesh, 0, n_mesh, points);
  }
  jsize n_out = out ? (*env)->GetArrayLength(env, out) : 0;
  jbyte* pixels = out ? (*env)->GetByteArrayElements(env, out, NULL) : NULL;
  /* Wrong sizes and nulls are passed on as such: the C ABI names the problem. */
  th_status status = th_render((th_avatar)avatar, n_mesh == TH_MESH_FLOATS ? points : NULL,
                               (size_t)n_mesh, (uint8_t*)pixels, (size_t)n_out);
  if (pixels) (*env)->ReleaseByteArrayElements(env, out, pixels, status == TH_OK ? 0 : JNI_ABORT);
  failed(env, status);
}

/* Writes the frame into `out` and, when `target` is not null, the target mesh into it. */
JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_drive(JNIEnv* env, jclass cls,
                                                               jlong avatar, jfloatArray mesh,
                                                               jint width, jint height,
                                                               jlong timestamp_ms, jbyteArray out,
                                                               jfloatArray target) {
  (void)cls;
  /* The mesh (up to 478 x 3 floats) is read through the JVM's copy or pin, not the stack. */
  jsize n_mesh = mesh ? (*env)->GetArrayLength(env, mesh) : 0;
  jsize n_out = out ? (*env)->GetArrayLength(env, out) : 0;
  jsize n_target = target ? (*env)->GetArrayLength(env, target) : 0;
  jfloat* points = mesh ? (*env)->GetFloatArrayElements(env, mesh, NULL) : NULL;
  jbyte* pixels = out && (points || !mesh) ? (*env)->GetByteArrayElements(env, out, NULL) : NULL;
  jfloat* moved = target && (pixels || !out) && (points || !mesh)
                      ? (*env)->GetFloatArrayElements(env, target, NULL)
                      : NULL;
  if ((mesh && !points) || (out && !pixels) || (target && !moved)) {
    if (points) (*env)->ReleaseFloatArrayElements(env, mesh, points, JNI_ABORT);
    if (pixels) (*env)->ReleaseByteArrayElements(env, out, pixels, JNI_ABORT);
    return; /* OutOfMemoryError is already pending */
  }
  /* Wrong sizes and nulls are passed on as such: the C ABI names the problem. */
  th_status status = th_drive((th_avatar)avatar, points, (size_t)n_mesh, (int32_t)width,
                              (int32_t)height, (int64_t)timestamp_ms, (uint8_t*)pixels,
                              (size_t)n_out, moved, (size_t)n_target);
  if (points) (*env)->ReleaseFloatArrayElements(env, mesh, points, JNI_ABORT);
  if (pixels) (*env)->ReleaseByteArrayElements(env, out, pixels, status == TH_OK ? 0 : JNI_ABORT);
  if (moved) (*env)->ReleaseFloatArrayElements(env, target, moved, status == TH_OK ? 0 : JNI_ABORT);
  failed(env, status);
}

JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_driveReset(JNIEnv* env, jclass cls,
                                                                    jlong avatar) {
  (void)cls;
  failed(env, th_drive_reset((th_avatar)avatar));
}

/* All three 0 turn the smoothing off. */
JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_setSmoothing(JNIEnv* env, jclass cls,
                                                                      jlong avatar,
                                                                      jdouble min_cutoff_hz,
                                                                      jdouble beta,
                                                                      jdouble d_cutoff_hz) {
  (void)cls;
  failed(env, th_set_smoothing((th_avatar)avatar, min_cutoff_hz, beta, d_cutoff_hz));
}

JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_setWatermark(JNIEnv* env, jclass cls,
                                                                      jlong avatar,
                                                                      jboolean enabled) {
  (void)cls;
  failed(env, th_set_watermark((th_avatar)avatar, enabled ? 1 : 0));
}

/* {pack id, version code} */
JNIEXPORT jintArray JNICALL Java_com_talkinghead_NativeBridge_watermarkPayload(JNIEnv* env,
                                                                               jclass cls,
                                                                               jlong avatar) {
  (void)cls;
  uint32_t pack_id = 0, version = 0;
  if (failed(env, th_watermark_payload((th_avatar)avatar, &pack_id, &version))) return NULL;
  jint values[2] = {(jint)pack_id, (jint)version};
  jintArray out = (*env)->NewIntArray(env, 2);
  if (out != NULL) (*env)->SetIntArrayRegion(env, out, 0, 2, values);
  return out;
}

/* {test cases run, max abs error}; a parity failure throws (status 11, TH_ERR_SELF_CHECK). */
JNIEXPORT jdoubleArray JNICALL Java_com_talkinghead_NativeBridge_selfCheck(JNIEnv* env, jclass cls,
                                                                           jlong avatar) {
  (void)cls;
  int32_t cases = 0;
  double max_abs = 0.0;
  if (failed(env, th_self_check((th_avatar)avatar, &cases, &max_abs))) return NULL;
  jdouble values[2] = {(jdouble)cases, (jdouble)max_abs};
  jdoubleArray out = (*env)->NewDoubleArray(env, 2);
  if (out != NULL) (*env)->SetDoubleArrayRegion(env, out, 0, 2, values);
  return out;
}

JNIEXPORT jint JNICALL Java_com_talkinghead_NativeBridge_verifyFiles(JNIEnv* env, jclass cls,
                                                                     jlong avatar) {
  (void)cls;
  int32_t files = 0;
  if (failed(env, th_verify_files((th_avatar)avatar, &files))) return 0;
  return (jint)files;
}

JNIEXPORT void JNICALL Java_com_talkinghead_NativeBridge_close(JNIEnv* env, jclass cls,
                                                               jlong avatar) {
  (void)cls;
  failed(env, th_close((th_avatar)avatar));
}
