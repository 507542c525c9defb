// Runs the Kotlin wrapper itself (src/main/kotlin/com/talkinghead/Avatar.kt) on a desktop
// JVM over the JNI glue, the way an Android app calls it:
//   kotlinc -cp kotlin-stdlib-jdk7.jar Avatar.kt AvatarCheck.kt -d check.jar
//   java -Djava.library.path=DIR -cp check.jar:kotlin-stdlib.jar:kotlin-stdlib-jdk7.jar \
//       com.talkinghead.check.AvatarCheckKt PACK PRECISION OUT.rgb
// Renders the neutral mesh to OUT.rgb (raw RGB bytes, watermarked), then checks the
// opt-out, the payload, the self-check, driving from MediaPipe-shaped meshes and the
// error paths. Prints "KOTLIN OK ..." at the end.
package com.talkinghead.check

import com.talkinghead.Avatar
import com.talkinghead.TalkingHeadException
import java.io.File
import kotlin.math.abs

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

/** The avatar's own [neutral] mesh as MediaPipe reports it in a 640 x 480 image, moved by [dx]. */
private fun trackedMesh(neutral: FloatArray, dx: Float): FloatArray {
    val mesh = FloatArray(Avatar.MESH_FLOATS)
    for (i in 0 until Avatar.MESH_FLOATS / 3) {
        mesh[3 * i] = (neutral[3 * i] + 150f) / 640f + dx
        mesh[3 * i + 1] = (neutral[3 * i + 1] + 80f) / 480f
        mesh[3 * i + 2] = neutral[3 * i + 2] / 640f
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
        val neutral = a.neutralMesh
        ensure(neutral.size == Avatar.MESH_FLOATS, "neutral mesh: ${neutral.size} floats")
        val frame = a.render(neutral)
        ensure(frame.size == a.resolution * a.resolution * 3, "frame of ${frame.size} bytes")
        File(out).writeBytes(frame)
        val reused = ByteArray(frame.size)
        a.render(neutral, reused)
        ensure(reused.contentEquals(frame), "rendering into the caller's buffer")
        a.setWatermark(false)
        val unmarked = a.render(neutral)
        a.setWatermark(true)
        ensure(!frame.contentEquals(unmarked), "the watermark changes the frame")
        val payload = a.watermarkPayload
        val check = a.selfCheck()
        ensure(check.cases >= 1 && check.maxAbsError >= 0.0, "self-check $check")
        ensure(a.verifyFiles() >= 1, "every listed file verified")
        ensure(statusOf { a.render(neutral, ByteArray(7)) } == 1, "short frame buffer")
        ensure(statusOf { a.render(FloatArray(136)) } == 1, "68 landmarks instead of a mesh")
        val nan = neutral.copyOf()
        nan[5] = Float.NaN
        ensure(statusOf { a.render(nan) } == 2, "NaN mesh")
        val target = FloatArray(Avatar.MESH_FLOATS)
        val driven = ByteArray(frame.size)
        a.drive(trackedMesh(neutral, 0f), 640, 480, 0L, driven, target)
        ensure(maxAbsDiff(target, neutral) < 1e-3f, "the first driven frame is the neutral mesh")
        ensure(driven.contentEquals(a.render(target)), "a driven frame is the render of its mesh")
        a.drive(trackedMesh(neutral, 0.05f), 640, 480, 33L, driven, target)
        val moved = maxAbsDiff(target, neutral)
        ensure(moved > 1f, "the second driven frame moves")
        ensure(a.drive(trackedMesh(neutral, 0.05f), 640, 480, 50L).size == frame.size, "new frame")
        ensure(statusOf { a.drive(trackedMesh(neutral, 0f), 640, 480, 50L) } == 12, "repeated timestamp")
        ensure(statusOf { a.drive(FloatArray(100), 640, 480, 66L) } == 1, "wrong-size mesh")
        ensure(statusOf { a.drive(trackedMesh(neutral, 0f), 0, 480, 66L) } == 1, "zero image width")
        ensure(
            statusOf { a.drive(trackedMesh(neutral, 0f), 640, 480, 66L, driven, FloatArray(7)) } == 1,
            "short target mesh buffer"
        )
        ensure(statusOf { a.setSmoothing(-1.0) } == 1, "negative cutoff")
        a.disableSmoothing() // and a new reference frame
        a.drive(trackedMesh(neutral, 0.05f), 640, 480, 0L, driven, target)
        ensure(maxAbsDiff(target, neutral) < 1e-3f, "smoothing resets")
        a.drive(trackedMesh(neutral, 0f), 640, 480, 33L, driven, target)
        val raw = maxAbsDiff(target, neutral)
        ensure(raw > moved, "unsmoothed, the avatar follows further ($raw vs $moved px)")
        a.setSmoothing()
        a.resetDriver()
        a.drive(trackedMesh(neutral, 0f), 640, 480, 0L, driven, target)
        ensure(maxAbsDiff(target, neutral) < 1e-3f, "reset starts over")
        println(
            "KOTLIN OK ${Avatar.version} ${a.resolution} " +
                "pack_id=${"%06x".format(payload.packId)} version=${payload.versionCode} " +
                "self_check cases=${check.cases} drive moved=${"%.3g".format(moved)} px"
        )
    }
    avatar.close() // closing twice is a no-op
    ensure(statusOf { avatar.render(FloatArray(Avatar.MESH_FLOATS)) } == 8, "render after close")
    ensure(statusOf { avatar.selfCheck() } == 8, "self-check after close")
    ensure(statusOf { avatar.verifyFiles() } == 8, "verify after close")
    ensure(statusOf { avatar.resetDriver() } == 8, "resetDriver after close")
    ensure(statusOf { avatar.drive(FloatArray(Avatar.MESH_FLOATS), 640, 480, 99L) } == 8, "drive after close")
    ensure(statusOf { Avatar.open(pack, "fp16") } == 1, "bad precision")
    ensure(statusOf { Avatar.open("/nonexistent", precision) } == 3, "missing pack")
}
