// Java twin of the Kotlin TalkingHeadException: the JNI glue constructs it by (int, String).
package com.talkinghead;

public class TalkingHeadException extends RuntimeException {
  public final int status;

  public TalkingHeadException(int status, String message) {
    super(message);
    this.status = status;
  }
}
