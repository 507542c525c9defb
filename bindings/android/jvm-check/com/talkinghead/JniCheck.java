// Runs the JNI glue end to end on a desktop JVM:
//   java -Djava.library.path=DIR com.talkinghead.JniCheck PACK PRECISION OUT.rgb
// Renders the neutral face to OUT.rgb (raw RGB bytes, watermarked), renders it unmarked,
// self-checks the pack, drives it from a synthetic MediaPipe mesh, and checks the error paths.
package com.talkinghead;

import java.io.FileOutputStream;
import java.util.Arrays;

public final class JniCheck {
  private static int expectStatus(Runnable call) {
    try {
      call.run();
    } catch (TalkingHeadException e) {
      if (e.getMessage() == null || e.getMessage().isEmpty()) throw new AssertionError("no message");
      return e.status;
    }
    throw new AssertionError("expected a TalkingHeadException");
  }

  private static void require(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }

  /** A MediaPipe-shaped mesh: 478 distinct (x, y, z) points on a spiral, shifted by dx. */
  static float[] syntheticMesh(float dx) {
    float[] mesh = new float[478 * 3];
    for (int i = 0; i < 478; i++) {
      double r = 0.1 * Math.sqrt((i + 1) / 478.0), angle = 2.39996 * i;
      mesh[3 * i] = (float) (0.5 + dx + r * Math.cos(angle));
      mesh[3 * i + 1] = (float) (0.5 + r * Math.sin(angle));
    }
    return mesh;
  }

  static float maxAbsDiff(float[] a, float[] b) {
    float max = 0;
    for (int i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
    return max;
  }

  public static void main(String[] args) throws Exception {
    System.loadLibrary("talkinghead_jni");
    long avatar = NativeBridge.open(args[0], args[1]);
    int size = NativeBridge.resolution(avatar);
    float[] lm = new float[136];
    NativeBridge.neutralLandmarks(avatar, lm);
    byte[] frame = new byte[size * size * 3];
    NativeBridge.render(avatar, lm, frame);
    try (FileOutputStream out = new FileOutputStream(args[2])) {
      out.write(frame);
    }
    int[] payload = NativeBridge.watermarkPayload(avatar);
    NativeBridge.setWatermark(avatar, false);
    byte[] unmarked = new byte[frame.length];
    NativeBridge.render(avatar, lm, unmarked);
    NativeBridge.setWatermark(avatar, true);
    require(!Arrays.equals(frame, unmarked), "the watermark changes the frame");
    double[] check = NativeBridge.selfCheck(avatar);
    require(check.length == 2 && check[0] >= 1 && check[1] >= 0, "self-check result");
    require(NativeBridge.verifyFiles(avatar) >= 1, "every listed file verified");
    require(expectStatus(() -> NativeBridge.render(avatar, lm, new byte[7])) == 1, "short frame");
    require(expectStatus(() -> NativeBridge.render(avatar, null, frame)) == 1, "null landmarks");
    float[] nan = lm.clone();
    nan[3] = Float.NaN;
    require(expectStatus(() -> NativeBridge.render(avatar, nan, frame)) == 2, "NaN landmarks");
    float[] driven = new float[136];
    NativeBridge.drive(avatar, syntheticMesh(0f), 640, 480, 0, driven);
    require(Arrays.equals(driven, lm), "the first driven frame is the neutral face");
    NativeBridge.drive(avatar, syntheticMesh(0.1f), 640, 480, 33, driven);
    float moved = maxAbsDiff(driven, lm);
    require(moved > 1, "the second driven frame moves");
    float[] kept = driven.clone();
    require(expectStatus(() -> NativeBridge.drive(avatar, syntheticMesh(0f), 640, 480, 33, driven))
        == 12, "repeated timestamp");
    require(Arrays.equals(driven, kept), "a failed drive leaves out as it was");
    require(expectStatus(() -> NativeBridge.drive(avatar, new float[100], 640, 480, 66, driven))
        == 1, "wrong-size mesh");
    require(expectStatus(() -> NativeBridge.drive(avatar, null, 640, 480, 66, driven)) == 1,
        "null mesh");
    require(expectStatus(() -> NativeBridge.drive(avatar, syntheticMesh(0f), 640, 480, 66,
        new float[135])) == 1, "short landmark buffer");
    require(expectStatus(() -> NativeBridge.setSmoothing(avatar, -1, 0, 0)) == 1, "bad smoothing");
    NativeBridge.setSmoothing(avatar, 0, 0, 0); // off, and a new neutral frame
    NativeBridge.drive(avatar, syntheticMesh(0.1f), 640, 480, 0, driven);
    require(Arrays.equals(driven, lm), "setSmoothing resets the driver");
    NativeBridge.drive(avatar, syntheticMesh(0f), 640, 480, 33, driven);
    require(maxAbsDiff(driven, lm) > moved, "unsmoothed, the avatar follows further");
    NativeBridge.driveReset(avatar);
    NativeBridge.drive(avatar, syntheticMesh(0f), 640, 480, 0, driven);
    require(Arrays.equals(driven, lm), "driveReset starts over");
    require(expectStatus(() -> NativeBridge.open(args[0], "fp16")) == 1, "bad precision");
    require(expectStatus(() -> NativeBridge.open("/nonexistent", args[1])) == 3, "missing pack");
    NativeBridge.close(avatar);
    require(expectStatus(() -> NativeBridge.render(avatar, lm, frame)) == 8, "render after close");
    require(expectStatus(() -> NativeBridge.setWatermark(avatar, false)) == 8, "set after close");
    require(expectStatus(() -> NativeBridge.watermarkPayload(avatar)) == 8, "payload after close");
    require(expectStatus(() -> NativeBridge.selfCheck(avatar)) == 8, "self-check after close");
    require(expectStatus(() -> NativeBridge.verifyFiles(avatar)) == 8, "verify after close");
    require(expectStatus(() -> NativeBridge.driveReset(avatar)) == 8, "driveReset after close");
    require(expectStatus(() -> NativeBridge.drive(avatar, syntheticMesh(0f), 640, 480, 99, driven))
        == 8, "drive after close");
    require(expectStatus(() -> NativeBridge.setSmoothing(avatar, 0, 0, 0)) == 8,
        "setSmoothing after close");
    System.out.printf("JNI OK %s %d pack_id=%06x version=%d self_check cases=%d max_abs=%.3g"
        + " drive moved=%.3g px%n", NativeBridge.version(), size, payload[0], payload[1],
        (int) check[0], check[1], moved);
  }
}
