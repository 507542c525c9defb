// swift-tools-version:5.7
// Swift wrapper over the talkinghead C ABI. Not built in this repository's CI (no Swift
// toolchain there): see docs/bindings.md. Link libtalkinghead (built by bindings/CMakeLists.txt
// for the target platform) by adding its folder to the linker search path, e.g.
//   swift build -Xlinker -L/path/to/build -Xlinker -rpath -Xlinker /path/to/build
import PackageDescription

let package = Package(
    name: "TalkingHead",
    products: [.library(name: "TalkingHead", targets: ["TalkingHead"])],
    targets: [
        .systemLibrary(name: "CTalkingHead", path: "Sources/CTalkingHead"),
        .target(name: "TalkingHead", dependencies: ["CTalkingHead"]),
    ]
)
