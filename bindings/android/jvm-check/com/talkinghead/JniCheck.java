// Runs the JNI glue end to end on a desktop JVM:
//   java -Djava.library.path=DIR com.talkinghead.JniCheck PACK PRECISION OUT.rgb
// Renders the neutral mesh to OUT.rgb (raw RGB bytes, watermarked), renders it unmarked,
// self-checks the pack, drives it from MediaPipe-shaped meshes, and checks the error paths.
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

  /** The avatar's own neutral mesh as MediaPipe reports it in a 640 x 480 image, moved by dx. */
  static float[] trackedMesh(float[] neutral, float dx) {
    float[] mesh = new float[478 * 3];
    for (int i = 0; i < 478; i++) {
      mesh[3 * i] = (neutral[3 * i] + 150f) / 640f + dx;
      mesh[3 * i + 1] = (neutral[3 * i + 1] + 80f) / 480f;
      mesh[3 * i + 2] = neutral[3 * i + 2] / 640f;
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
    float[] neutral = new float[478 * 3];
    NativeBridge.neutralMesh(avatar, neutral);
    byte[] frame = new byte[size * size * 3];
    NativeBridge.render(avatar, neutral, frame);
    try (FileOutputStream out = new FileOutputStream(args[2])) {
      out.write(frame);
    }
    int[] payload = NativeBridge.watermarkPayload(avatar);
    NativeBridge.setWatermark(avatar, false);
    byte[] unmarked = new byte[frame.length];
    NativeBridge.render(avatar, neutral, unmarked);
    NativeBridge.setWatermark(avatar, true);
    require(!Arrays.equals(frame, unmarked), "the watermark changes the frame");
    double[] check = NativeBridge.selfCheck(avatar);
    require(check.length == 2 && check[0] >= 1 && check[1] >= 0, "self-check result");
    require(NativeBridge.verifyFiles(avatar) >= 1, "every listed file verified");
    require(expectStatus(() -> NativeBridge.render(avatar, neutral, new byte[7])) == 1, "short frame");
    require(expectStatus(() -> NativeBridge.render(avatar, null, frame)) == 1, "null mesh");
    require(expectStatus(() -> NativeBridge.render(avatar, new float[136], frame)) == 1,
        "68 landmarks instead of a mesh");
    float[] nan = neutral.clone();
    nan[5] = Float.NaN;
    require(expectStatus(() -> NativeBridge.render(avatar, nan, frame)) == 2, "NaN mesh");
    byte[] driven = new byte[frame.length];
    float[] target = new float[478 * 3];
    NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 0, driven, target);
    require(maxAbsDiff(target, neutral) < 1e-3f, "the first driven frame is the neutral mesh");
    NativeBridge.drive(avatar, trackedMesh(neutral, 0.05f), 640, 480, 33, driven, target);
    float moved = maxAbsDiff(target, neutral);
    require(moved > 1, "the second driven frame moves");
    NativeBridge.drive(avatar, trackedMesh(neutral, 0.05f), 640, 480, 50, driven, null);
    float[] kept = target.clone();
    byte[] keptFrame = driven.clone();
    require(expectStatus(() -> NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 50,
        driven, target)) == 12, "repeated timestamp");
    require(Arrays.equals(target, kept) && Arrays.equals(driven, keptFrame),
        "a failed drive leaves its outputs as they were");
    require(expectStatus(() -> NativeBridge.drive(avatar, new float[100], 640, 480, 66, driven,
        null)) == 1, "wrong-size mesh");
    require(expectStatus(() -> NativeBridge.drive(avatar, null, 640, 480, 66, driven, null)) == 1,
        "null mesh");
    require(expectStatus(() -> NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 66,
        new byte[7], null)) == 1, "short frame buffer");
    require(expectStatus(() -> NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 66,
        driven, new float[135])) == 1, "short target mesh buffer");
    require(expectStatus(() -> NativeBridge.setSmoothing(avatar, -1, 0, 0)) == 1, "bad smoothing");
    NativeBridge.setSmoothing(avatar, 0, 0, 0); // off, and a new reference frame
    NativeBridge.drive(avatar, trackedMesh(neutral, 0.05f), 640, 480, 0, driven, target);
    require(maxAbsDiff(target, neutral) < 1e-3f, "setSmoothing resets the driver");
    NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 33, driven, target);
    require(maxAbsDiff(target, neutral) > moved, "unsmoothed, the avatar follows further");
    NativeBridge.driveReset(avatar);
    NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 0, driven, target);
    require(maxAbsDiff(target, neutral) < 1e-3f, "driveReset starts over");
    require(expectStatus(() -> NativeBridge.open(args[0], "fp16")) == 1, "bad precision");
    require(expectStatus(() -> NativeBridge.open("/nonexistent", args[1])) == 3, "missing pack");
    NativeBridge.close(avatar);
    require(expectStatus(() -> NativeBridge.render(avatar, neutral, frame)) == 8, "render after close");
    require(expectStatus(() -> NativeBridge.setWatermark(avatar, false)) == 8, "set after close");
    require(expectStatus(() -> NativeBridge.watermarkPayload(avatar)) == 8, "payload after close");
    require(expectStatus(() -> NativeBridge.selfCheck(avatar)) == 8, "self-check after close");
    require(expectStatus(() -> NativeBridge.verifyFiles(avatar)) == 8, "verify after close");
    require(expectStatus(() -> NativeBridge.driveReset(avatar)) == 8, "driveReset after close");
    require(expectStatus(() -> NativeBridge.drive(avatar, trackedMesh(neutral, 0f), 640, 480, 99,
        driven, null)) == 8, "drive after close");
    require(expectStatus(() -> NativeBridge.setSmoothing(avatar, 0, 0, 0)) == 8,
        "setSmoothing after close");
    System.out.printf("JNI OK %s %d pack_id=%06x version=%d self_check cases=%d max_abs=%.3g"
        + " drive moved=%.3g px%n", NativeBridge.version(), size, payload[0], payload[1],
        (int) check[0], check[1], moved);
  }
}
