// Runs the Kotlin wrapper itself (src/main/kotlin/com/talkinghead/Avatar.kt) on a desktop
// JVM over the JNI glue, the way an Android app calls it:
//   kotlinc -cp kotlin-stdlib-jdk7.jar Avatar.kt AvatarCheck.kt -d check.jar
//   java -Djava.library.path=DIR -cp check.jar:kotlin-stdlib.jar:kotlin-stdlib-jdk7.jar \
//       com.talkinghead.check.AvatarCheckKt PACK PRECISION OUT.rgb
// Renders the neutral face to OUT.rgb (raw RGB bytes, watermarked), then checks the
// opt-out, the payload, the self-check, driving from a synthetic MediaPipe mesh and the
// error paths. Prints "KOTLIN OK ..." at the end.
package com.talkinghead.check

import com.talkinghead.Avatar
import com.talkinghead.TalkingHeadException
import java.io.File
import kotlin.math.abs
import kotlin.math.cos
import kotlin.math.sin
import kotlin.math.sqrt

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

/** A MediaPipe-shaped mesh: 478 distinct (x, y, z) points on a spiral, shifted by [dx]. */
private fun syntheticMesh(dx: Float): FloatArray {
    val mesh = FloatArray(Avatar.MESH_FLOATS)
    for (i in 0 until Avatar.MESH_FLOATS / 3) {
        val r = 0.1 * sqrt((i + 1) / 478.0)
        mesh[3 * i] = (0.5 + dx + r * cos(2.39996 * i)).toFloat()
        mesh[3 * i + 1] = (0.5 + r * sin(2.39996 * i)).toFloat()
    }
    return mesh
}

private fun maxAbsDiff(a: FloatArray, b: FloatArray): Float =
    a.indices.fold(0f) { m, i -> maxOf(m, abs(a[i] - b[i])) }

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
        ensure(a.verifyFiles() >= 1, "every listed file verified")
        ensure(statusOf { a.render(lm, ByteArray(7)) } == 1, "short frame buffer")
        val nan = lm.copyOf()
        nan[3] = Float.NaN
        ensure(statusOf { a.render(nan) } == 2, "NaN landmarks")
        ensure(a.drive(syntheticMesh(0f), 640, 480, 0L).contentEquals(lm), "first is neutral")
        val driven = FloatArray(Avatar.LANDMARK_FLOATS)
        a.drive(syntheticMesh(0.1f), 640, 480, 33L, driven)
        val moved = maxAbsDiff(driven, lm)
        ensure(moved > 1f, "the second driven frame moves")
        ensure(statusOf { a.drive(syntheticMesh(0f), 640, 480, 33L) } == 12, "repeated timestamp")
        ensure(statusOf { a.drive(FloatArray(100), 640, 480, 66L) } == 1, "wrong-size mesh")
        ensure(statusOf { a.drive(syntheticMesh(0f), 0, 480, 66L) } == 1, "zero image width")
        ensure(statusOf { a.setSmoothing(-1.0) } == 1, "negative cutoff")
        a.disableSmoothing() // and a new neutral frame
        ensure(a.drive(syntheticMesh(0.1f), 640, 480, 0L).contentEquals(lm), "smoothing resets")
        val raw = maxAbsDiff(a.drive(syntheticMesh(0f), 640, 480, 33L), lm)
        ensure(raw > moved, "unsmoothed, the avatar follows further ($raw vs $moved px)")
        a.setSmoothing()
        a.resetDriver()
        ensure(a.drive(syntheticMesh(0f), 640, 480, 0L).contentEquals(lm), "reset starts over")
        println(
            "KOTLIN OK ${Avatar.version} ${a.resolution} " +
                "pack_id=${"%06x".format(payload.packId)} version=${payload.versionCode} " +
                "self_check cases=${check.cases} drive moved=${"%.3g".format(moved)} px"
        )
    }
    avatar.close() // closing twice is a no-op
    ensure(statusOf { avatar.render(FloatArray(Avatar.LANDMARK_FLOATS)) } == 8, "render after close")
    ensure(statusOf { avatar.selfCheck() } == 8, "self-check after close")
    ensure(statusOf { avatar.verifyFiles() } == 8, "verify after close")
    ensure(statusOf { avatar.resetDriver() } == 8, "resetDriver after close")
    ensure(statusOf { avatar.drive(syntheticMesh(0f), 640, 480, 99L) } == 8, "drive after close")
    ensure(statusOf { Avatar.open(pack, "fp16") } == 1, "bad precision")
    ensure(statusOf { Avatar.open("/nonexistent", precision) } == 3, "missing pack")
}
