// Runs the Kotlin wrapper itself (src/main/kotlin/com/talkinghead/Avatar.kt) on a desktop
// JVM over the JNI glue, the way an Android app calls it:
//   kotlinc -cp kotlin-stdlib-jdk7.jar Avatar.kt AvatarCheck.kt -d check.jar
//   java -Djava.library.path=DIR -cp check.jar:kotlin-stdlib.jar:kotlin-stdlib-jdk7.jar \
//       com.talkinghead.check.AvatarCheckKt PACK PRECISION OUT.rgb
// Renders the neutral face to OUT.rgb (raw RGB bytes, watermarked), then checks the
// opt-out, the payload, the self-check and the error paths. Prints "KOTLIN OK ..." at the end.
package com.talkinghead.check

import com.talkinghead.Avatar
import com.talkinghead.TalkingHeadException
import java.io.File

private fun ensure(ok: Boolean, what: String) {
    if (!ok) throw AssertionError(what)
}

/** The th_status of the TalkingHeadException [call] throws. */
private fun statusOf(call: () -> Unit): Int {
    try {
        call()
    } catch (e: TalkingHeadException) {
        ensure(!e.message.isNullOrEmpty(), "status ${e.status} without a message")
        return e.status
    }
    throw AssertionError("expected a TalkingHeadException")
}

fun main(args: Array<String>) {
    ensure(args.size == 3, "usage: AvatarCheck PACK PRECISION OUT.rgb")
    val (pack, precision, out) = args
    val avatar = Avatar.open(pack, precision)
    avatar.use { a: Avatar ->
        val lm = a.neutralLandmarks
        ensure(lm.size == Avatar.LANDMARK_FLOATS, "neutral landmarks: ${lm.size} floats")
        val frame = a.render(lm)
        ensure(frame.size == a.resolution * a.resolution * 3, "frame of ${frame.size} bytes")
        File(out).writeBytes(frame)
        val reused = ByteArray(frame.size)
        a.render(lm, reused)
        ensure(reused.contentEquals(frame), "rendering into the caller's buffer")
        a.setWatermark(false)
        val unmarked = a.render(lm)
        a.setWatermark(true)
        ensure(!frame.contentEquals(unmarked), "the watermark changes the frame")
        val payload = a.watermarkPayload
        val check = a.selfCheck()
        ensure(check.cases >= 1 && check.maxAbsError >= 0.0, "self-check $check")
        ensure(statusOf { a.render(lm, ByteArray(7)) } == 1, "short frame buffer")
        val nan = lm.copyOf()
        nan[3] = Float.NaN
        ensure(statusOf { a.render(nan) } == 2, "NaN landmarks")
        println(
            "KOTLIN OK ${Avatar.version} ${a.resolution} " +
                "pack_id=${"%06x".format(payload.packId)} version=${payload.versionCode} " +
                "self_check cases=${check.cases}"
        )
    }
    avatar.close() // closing twice is a no-op
    ensure(statusOf { avatar.render(FloatArray(Avatar.LANDMARK_FLOATS)) } == 8, "render after close")
    ensure(statusOf { avatar.selfCheck() } == 8, "self-check after close")
    ensure(statusOf { Avatar.open(pack, "fp16") } == 1, "bad precision")
    ensure(statusOf { Avatar.open("/nonexistent", precision) } == 3, "missing pack")
}
