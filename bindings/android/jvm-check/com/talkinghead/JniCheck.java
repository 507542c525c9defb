// Runs the JNI glue end to end on a desktop JVM:
//   java -Djava.library.path=DIR com.talkinghead.JniCheck PACK PRECISION OUT.rgb
// Renders the neutral face to OUT.rgb (raw RGB bytes, watermarked), renders it unmarked,
// self-checks the pack, and checks the error paths.
package com.talkinghead;

import java.io.FileOutputStream;

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
    require(!java.util.Arrays.equals(frame, unmarked), "the watermark changes the frame");
    double[] check = NativeBridge.selfCheck(avatar);
    require(check.length == 2 && check[0] >= 1 && check[1] >= 0, "self-check result");
    require(expectStatus(() -> NativeBridge.render(avatar, lm, new byte[7])) == 1, "short frame");
    require(expectStatus(() -> NativeBridge.render(avatar, null, frame)) == 1, "null landmarks");
    float[] nan = lm.clone();
    nan[3] = Float.NaN;
    require(expectStatus(() -> NativeBridge.render(avatar, nan, frame)) == 2, "NaN landmarks");
    require(expectStatus(() -> NativeBridge.open(args[0], "fp16")) == 1, "bad precision");
    require(expectStatus(() -> NativeBridge.open("/nonexistent", args[1])) == 3, "missing pack");
    NativeBridge.close(avatar);
    require(expectStatus(() -> NativeBridge.render(avatar, lm, frame)) == 8, "render after close");
    require(expectStatus(() -> NativeBridge.setWatermark(avatar, false)) == 8, "set after close");
    require(expectStatus(() -> NativeBridge.watermarkPayload(avatar)) == 8, "payload after close");
    require(expectStatus(() -> NativeBridge.selfCheck(avatar)) == 8, "self-check after close");
    System.out.printf("JNI OK %s %d pack_id=%06x version=%d self_check cases=%d max_abs=%.3g%n",
        NativeBridge.version(), size, payload[0], payload[1], (int) check[0], check[1]);
  }
}
