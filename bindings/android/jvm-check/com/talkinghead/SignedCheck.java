// Desktop-JVM check of th_open_signed through the JNI glue (as Avatar.openSigned calls it):
// prints the status of opening args[0] with the hex public key args[1] ("0" when it opened).
// tests/test_security.py signs, tampers and runs it. Not shipped.
package com.talkinghead;

public final class SignedCheck {
  public static void main(String[] args) {
    System.loadLibrary("talkinghead_jni");
    byte[] key = new byte[32];
    for (int i = 0; i < 32; i++) key[i] = (byte) Integer.parseInt(args[1].substring(2 * i, 2 * i + 2), 16);
    try {
      long avatar = NativeBridge.openSigned(args[0], "fp32", key);
      NativeBridge.close(avatar);
      System.out.println("status 0");
    } catch (TalkingHeadException e) {
      System.out.println("status " + e.status);
    }
  }
}
