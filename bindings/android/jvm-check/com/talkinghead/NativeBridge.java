// Desktop-JVM stand-in for the Kotlin `internal object NativeBridge` (same class name and
// JNI signatures), so the JNI glue can be loaded and run on a build machine without the
// Kotlin compiler or an Android device. Not shipped.
package com.talkinghead;

final class NativeBridge {
  static native String version();
  static native long open(String packDir, String precision);
  static native long openSigned(String packDir, String precision, byte[] publicKeys);
  static native int resolution(long avatar);
  static native void neutralMesh(long avatar, float[] out);
  static native void render(long avatar, float[] mesh, byte[] out);
  static native void drive(long avatar, float[] mesh, int imageWidth, int imageHeight,
      long timestampMs, byte[] out, float[] targetMesh);
  static native void driveReset(long avatar);
  static native void setSmoothing(long avatar, double minCutoffHz, double beta, double dCutoffHz);
  static native void setWatermark(long avatar, boolean enabled);
  static native int[] watermarkPayload(long avatar);
  static native double[] selfCheck(long avatar);
  static native int verifyFiles(long avatar);
  static native void close(long avatar);
}
