// Swift wrapper over the talkinghead C ABI (bindings/include/talkinghead.h).
import CTalkingHead
import Foundation

/// A failed native call: `status` is the th_status value, `message` says what was wrong.
public struct TalkingHeadError: Error, CustomStringConvertible {
    public let status: UInt32
    public let name: String
    public let message: String
    public var description: String { "\(name): \(message)" }
}

private func check(_ status: th_status) throws {
    if status == TH_OK { return }
    throw TalkingHeadError(
        status: status.rawValue,
        name: String(cString: th_status_name(status)),
        message: String(cString: th_last_error()))
}

/// An opened avatar pack (warp and refine). A target mesh is MediaPipe's 478 points as
/// (x, y, z) in the avatar's crop pixels, interleaved (`Avatar.meshFloats` floats); frames
/// are `resolution * resolution * 3` RGB bytes. Freed on `close()` or deinit.
public final class Avatar {
    /// Floats of a mesh: MediaPipe's 478 points x (x, y, z).
    public static let meshFloats = Int(TH_MESH_FLOATS)
    public static var version: String { String(cString: th_version()) }

    private var handle: th_avatar = 0
    /// Side of the square model input and output, in px.
    public let resolution: Int

    /// Open the pack folder at `pack` with its ExecuTorch model of `precision` ("fp32"/"int8").
    public init(pack: URL, precision: String = "int8") throws {
        var h: th_avatar = 0
        try check(pack.withUnsafeFileSystemRepresentation { th_open($0, precision, &h) })
        var size: Int32 = 0
        do {
            try check(th_resolution(h, &size))
        } catch {
            th_close(h)
            throw error
        }
        handle = h
        resolution = Int(size)
    }

    /// Open `pack` only if its `manifest.sig` is an Ed25519 signature of the manifest by one
    /// of `trustedKeys` (32-byte public keys; `talkinghead keygen` writes them in hex);
    /// otherwise throws TH_ERR_SIGNATURE (13). Trust model: docs/security.md.
    public init(pack: URL, trustedKeys: [Data], precision: String = "int8") throws {
        var h: th_avatar = 0
        let keys = trustedKeys.reduce(Data(), +)
        // A key of the wrong size passes no keys: th_open_signed refuses that by name.
        let count = keys.count == 32 * trustedKeys.count ? trustedKeys.count : 0
        try check(pack.withUnsafeFileSystemRepresentation { path in
            keys.withUnsafeBytes { raw in
                th_open_signed(path, precision, raw.bindMemory(to: UInt8.self).baseAddress, count, &h)
            }
        })
        var size: Int32 = 0
        do {
            try check(th_resolution(h, &size))
        } catch {
            th_close(h)
            throw error
        }
        handle = h
        resolution = Int(size)
    }

    deinit { close() }

    /// The enrolled face at rest: its mesh (`Avatar.meshFloats` floats, crop px).
    public func neutralMesh() throws -> [Float] {
        var out = [Float](repeating: 0, count: Avatar.meshFloats)
        try out.withUnsafeMutableBufferPointer {
            try check(th_neutral_mesh(handle, $0.baseAddress, $0.count))
        }
        return out
    }

    /// Render the avatar at the pose of `mesh` (`Avatar.meshFloats` floats, crop px) into
    /// `frame` (resolution * resolution * 3 bytes), reused across frames: the photo warped
    /// to the mesh, then refined and watermarked.
    public func render(mesh: [Float], into frame: inout [UInt8]) throws {
        try mesh.withUnsafeBufferPointer { points in
            try frame.withUnsafeMutableBufferPointer { out in
                try check(th_render(handle, points.baseAddress, points.count, out.baseAddress, out.count))
            }
        }
    }

    /// Render into a new RGB byte array.
    public func render(mesh: [Float]) throws -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: resolution * resolution * 3)
        try render(mesh: mesh, into: &frame)
        return frame
    }

    /// Drive the avatar from MediaPipe face tracking: one FaceLandmarker mesh of a video
    /// frame in, the avatar's frame out (into `frame`, resolution * resolution * 3 bytes,
    /// reused across frames). One Euro smoothing, retargeting onto the avatar's mesh and the
    /// render happen natively, as the Python SDK's `MeshDriver` + `Avatar.render` do;
    /// `targetMesh`, when given (`Avatar.meshFloats` floats), receives the mesh the frame
    /// was rendered at. The driver's first frame (after opening, `resetDriver()` or
    /// `setSmoothing`) is its reference: it renders `neutralMesh()`.
    ///
    /// `mesh` holds the points of one face as (x, y, z), normalised as MediaPipe's
    /// `NormalizedLandmark` (478 points; 468 points and (x, y) pairs are accepted too).
    /// From the iOS Tasks API (`FaceLandmarkerResult`):
    ///
    ///     let mesh = result.faceLandmarks[0].flatMap { [$0.x, $0.y, $0.z] }
    ///
    /// `imageWidth` x `imageHeight`: the tracked image, px. `timestampMs` must increase from
    /// call to call (the one given to `detect(videoFrame:timestampInMilliseconds:)` will
    /// do); a repeated or earlier one throws `TalkingHeadError` named TH_ERR_TIMESTAMP. When
    /// the face is lost, keep showing the last frame; call `resetDriver()` before another
    /// person drives.
    public func drive(
        mesh: [Float], imageWidth: Int, imageHeight: Int, timestampMs: Int64,
        into frame: inout [UInt8], targetMesh: UnsafeMutableBufferPointer<Float>? = nil
    ) throws {
        try mesh.withUnsafeBufferPointer { points in
            try frame.withUnsafeMutableBufferPointer { out in
                try check(th_drive(
                    handle, points.baseAddress, points.count, Int32(clamping: imageWidth),
                    Int32(clamping: imageHeight), timestampMs, out.baseAddress, out.count,
                    targetMesh?.baseAddress, targetMesh?.count ?? 0))
            }
        }
    }

    /// `drive` into a new RGB byte array.
    public func drive(mesh: [Float], imageWidth: Int, imageHeight: Int, timestampMs: Int64)
        throws -> [UInt8]
    {
        var frame = [UInt8](repeating: 0, count: resolution * resolution * 3)
        try drive(
            mesh: mesh, imageWidth: imageWidth, imageHeight: imageHeight,
            timestampMs: timestampMs, into: &frame)
        return frame
    }

    /// Forget the driver: the next `drive` frame is the new reference, timestamps start over.
    public func resetDriver() throws {
        try check(th_drive_reset(handle))
    }

    /// The One Euro filter of `drive`, as the Python SDK's `OneEuroParams` (speeds in face
    /// sizes per second; the defaults are its defaults and the filter's after opening):
    /// `minCutoffHz` > 0, `beta` >= 0, `dCutoffHz` > 0. Also resets the driver.
    public func setSmoothing(minCutoffHz: Double = 1, beta: Double = 30, dCutoffHz: Double = 1)
        throws
    {
        try check(th_set_smoothing(handle, minCutoffHz, beta, dCutoffHz))
    }

    /// Drive with the raw tracked points, unsmoothed. Also resets the driver.
    public func disableSmoothing() throws {
        try check(th_set_smoothing(handle, 0, 0, 0))
    }

    /// Watermark rendered frames as synthetic (true, the default) or not (false): the
    /// opt-out, as the Python SDK's `AvatarOptions(watermark=False)`.
    public func setWatermark(_ enabled: Bool) throws {
        try check(th_set_watermark(handle, enabled ? 1 : 0))
    }

    /// What watermarked frames of this avatar carry, for the app's records: the pack id
    /// (24 bits) and the library's version code (8 bits).
    public func watermarkPayload() throws -> (packId: UInt32, versionCode: UInt32) {
        var packId: UInt32 = 0
        var versionCode: UInt32 = 0
        try check(th_watermark_payload(handle, &packId, &versionCode))
        return (packId, versionCode)
    }

    /// Run the pack's bundled test cases (the model entry's .bpte) through the loaded model
    /// and compare with their expected outputs; call once after opening, e.g. at first
    /// launch. Throws `TalkingHeadError` named TH_ERR_SELF_CHECK when the outputs are off.
    public func selfCheck() throws -> (cases: Int, maxAbsError: Double) {
        var cases: Int32 = 0
        var maxAbsError: Double = 0
        try check(th_self_check(handle, &cases, &maxAbsError))
        return (Int(cases), maxAbsError)
    }

    /// Check every file the pack's manifest lists against its sha256 (opening checks only
    /// the model it loads); call once after installing or downloading a pack. Returns how
    /// many files were checked; throws TH_ERR_INTEGRITY naming a file that does not match.
    public func verifyFiles() throws -> Int {
        var files: Int32 = 0
        try check(th_verify_files(handle, &files))
        return Int(files)
    }

    /// Release the native model. Idempotent; later calls throw TH_ERR_CLOSED.
    public func close() {
        if handle != 0 {
            th_close(handle)
            handle = 0
        }
    }
}
