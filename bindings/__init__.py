"""talkinghead.bindings: the native runtime for phone apps.

``include/talkinghead.h`` is a C ABI over the ExecuTorch C++ runtime (``src/``, built by
``CMakeLists.txt`` against the executorch pip wheel); ``android/`` and ``swift/`` wrap it.
:mod:`talkinghead.bindings.native` builds it and calls it from Python through ctypes.
See docs/bindings.md.
"""
