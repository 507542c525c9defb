// Kotlin wrapper over the talkinghead C ABI (bindings/include/talkinghead.h) via JNI.
// CI compiles it with kotlinc and runs it on a desktop JVM (kotlin-check/AvatarCheck.kt);
// it has not run on Android. See docs/bindings.md for what is verified.
package com.talkinghead

/** A failed native call: [status] is the th_status value, the message says what was wrong. */
class TalkingHeadException(val status: Int, message: String) : RuntimeException(message)

/** What watermarked frames carry: the pack id (24 bits) and the library's version code (8 bits). */
data class WatermarkPayload(val packId: Int, val versionCode: Int)

/** A passed self-check: how many bundled test cases ran, and the largest |got - want|. */
data class SelfCheckResult(val cases: Int, val maxAbsError: Double)

/**
 * An opened avatar pack (warp and refine). A target mesh is MediaPipe's 478 points as
 * (x, y, z) in the avatar's crop pixels, interleaved ([x0, y0, z0, x1, ...], [MESH_FLOATS]
 * floats); frames are resolution x resolution x 3 RGB bytes. Close it (or use `use { }`) to
 * release the native model.
 */
class Avatar private constructor(private var handle: Long) : AutoCloseable {
    /** Side of the square model input and output, in px. */
    val resolution: Int = NativeBridge.resolution(handle)

    /** The enrolled face at rest: its mesh ([MESH_FLOATS] floats, crop px). */
    val neutralMesh: FloatArray
        get() = FloatArray(MESH_FLOATS).also { NativeBridge.neutralMesh(handle, it) }

    /**
     * Render the avatar at the pose of [mesh] ([MESH_FLOATS] floats, crop px) into [out]
     * (resolution * resolution * 3 bytes, RGB), reused across frames: the photo warped to
     * the mesh, then refined and watermarked.
     */
    fun render(mesh: FloatArray, out: ByteArray) = NativeBridge.render(handle, mesh, out)

    /** Render into a new RGB byte array. */
    fun render(mesh: FloatArray): ByteArray =
        ByteArray(resolution * resolution * 3).also { render(mesh, it) }

    /**
     * Drive the avatar from MediaPipe face tracking: one FaceLandmarker mesh of a video
     * frame in, the avatar's frame out, written into [out] (resolution * resolution * 3
     * bytes, reused across frames). One Euro smoothing, retargeting onto the avatar's mesh
     * and the render happen natively, as the Python SDK's MeshDriver + Avatar.render do;
     * [targetMesh], when given ([MESH_FLOATS] floats), receives the mesh the frame was
     * rendered at. The driver's first frame (after open, [resetDriver] or [setSmoothing])
     * is its reference: it renders [neutralMesh].
     *
     * [mesh] holds the points of one face as (x, y, z), normalised as MediaPipe's
     * NormalizedLandmark ([MESH_FLOATS] floats for 478 points; 468 points and (x, y) pairs
     * are accepted too). From the Android Tasks API:
     * ```
     * val face = result.faceLandmarks()[0]  // FaceLandmarkerResult, VIDEO or LIVE_STREAM mode
     * for ((i, p) in face.withIndex()) {
     *     mesh[3 * i] = p.x()
     *     mesh[3 * i + 1] = p.y()
     *     mesh[3 * i + 2] = p.z()
     * }
     * ```
     * [imageWidth] x [imageHeight]: the tracked image, px. [timestampMs] must increase from
     * call to call (the one given to detectForVideo or detectAsync will do); a repeated or
     * earlier one throws TalkingHeadException with status 12 (TH_ERR_TIMESTAMP). When the
     * face is lost, keep showing the last frame; call [resetDriver] before another person
     * drives.
     */
    fun drive(
        mesh: FloatArray,
        imageWidth: Int,
        imageHeight: Int,
        timestampMs: Long,
        out: ByteArray,
        targetMesh: FloatArray? = null
    ) = NativeBridge.drive(handle, mesh, imageWidth, imageHeight, timestampMs, out, targetMesh)

    /** [drive] into a new RGB byte array. */
    fun drive(mesh: FloatArray, imageWidth: Int, imageHeight: Int, timestampMs: Long): ByteArray =
        ByteArray(resolution * resolution * 3).also {
            drive(mesh, imageWidth, imageHeight, timestampMs, it)
        }

    /** Forget the driver: the next [drive] frame is the new reference, timestamps start over. */
    fun resetDriver() = NativeBridge.driveReset(handle)

    /**
     * The One Euro filter of [drive], as the Python SDK's OneEuroParams (speeds in face
     * sizes per second; the defaults are its defaults and the filter's after open):
     * [minCutoffHz] > 0, [beta] >= 0, [dCutoffHz] > 0. Also resets the driver.
     */
    fun setSmoothing(minCutoffHz: Double = 1.0, beta: Double = 30.0, dCutoffHz: Double = 1.0) =
        NativeBridge.setSmoothing(handle, minCutoffHz, beta, dCutoffHz)

    /** Drive with the raw tracked points, unsmoothed. Also resets the driver. */
    fun disableSmoothing() = NativeBridge.setSmoothing(handle, 0.0, 0.0, 0.0)

    /**
     * Watermark rendered frames as synthetic (true, the default) or not (false): the
     * opt-out, as the Python SDK's AvatarOptions(watermark = false).
     */
    fun setWatermark(enabled: Boolean) = NativeBridge.setWatermark(handle, enabled)

    /** What watermarked frames of this avatar carry, for the app's records. */
    val watermarkPayload: WatermarkPayload
        get() = NativeBridge.watermarkPayload(handle).let { WatermarkPayload(it[0], it[1]) }

    /**
     * Run the pack's bundled test cases (the model entry's .bpte) through the loaded model
     * and compare with their expected outputs; call once after open, e.g. at first launch.
     * Throws TalkingHeadException with status 11 (TH_ERR_SELF_CHECK) when the outputs are off.
     */
    fun selfCheck(): SelfCheckResult =
        NativeBridge.selfCheck(handle).let { SelfCheckResult(it[0].toInt(), it[1]) }

    /**
     * Check every file the pack's manifest lists against its sha256 (open checks only the
     * model it loads); call once after installing or downloading a pack. Returns how many
     * files were checked; throws with status 4 (TH_ERR_INTEGRITY) naming a file that does
     * not match, 3 (TH_ERR_PACK) for a missing one.
     */
    fun verifyFiles(): Int = NativeBridge.verifyFiles(handle)

    @Synchronized
    override fun close() {
        if (handle != 0L) {
            NativeBridge.close(handle)
            handle = 0L
        }
    }

    companion object {
        /** Floats of a mesh: MediaPipe's 478 points x (x, y, z). */
        const val MESH_FLOATS = 478 * 3

        init {
            System.loadLibrary("talkinghead_jni")
        }

        /** Open the pack folder [packDir] with its ExecuTorch model of [precision] ("fp32"/"int8"). */
        fun open(packDir: String, precision: String = "int8"): Avatar =
            Avatar(NativeBridge.open(packDir, precision))

        /**
         * Open [packDir] only if its manifest is signed (Ed25519, manifest.sig) by one of
         * [trustedKeys], each the 32 bytes of a public key (`talkinghead keygen` writes them
         * in hex). Throws TalkingHeadException with status 13 (TH_ERR_SIGNATURE) otherwise.
         */
        fun openSigned(packDir: String, trustedKeys: List<ByteArray>, precision: String = "int8"): Avatar {
            require(trustedKeys.isNotEmpty() && trustedKeys.all { it.size == 32 }) {
                "trustedKeys must hold 32-byte Ed25519 public keys"
            }
            val keys = ByteArray(32 * trustedKeys.size)
            trustedKeys.forEachIndexed { i, k -> k.copyInto(keys, 32 * i) }
            return Avatar(NativeBridge.openSigned(packDir, precision, keys))
        }

        val version: String
            get() = NativeBridge.version()
    }
}

internal object NativeBridge {
    @JvmStatic external fun version(): String
    @JvmStatic external fun open(packDir: String, precision: String): Long
    @JvmStatic external fun openSigned(packDir: String, precision: String, publicKeys: ByteArray): Long
    @JvmStatic external fun resolution(avatar: Long): Int
    @JvmStatic external fun neutralMesh(avatar: Long, out: FloatArray)
    @JvmStatic external fun render(avatar: Long, mesh: FloatArray, out: ByteArray)
    @JvmStatic external fun drive(
        avatar: Long,
        mesh: FloatArray,
        imageWidth: Int,
        imageHeight: Int,
        timestampMs: Long,
        out: ByteArray,
        targetMesh: FloatArray?
    )
    @JvmStatic external fun driveReset(avatar: Long)
    @JvmStatic external fun setSmoothing(
        avatar: Long, minCutoffHz: Double, beta: Double, dCutoffHz: Double
    )
    @JvmStatic external fun setWatermark(avatar: Long, enabled: Boolean)
    @JvmStatic external fun watermarkPayload(avatar: Long): IntArray
    @JvmStatic external fun selfCheck(avatar: Long): DoubleArray
    @JvmStatic external fun verifyFiles(avatar: Long): Int
    @JvmStatic external fun close(avatar: Long)
}
