"""Peak memory of one generator runtime, measured in a fresh process.

    python -m talkinghead.benchmarks.memory --backend executorch --file model.pte --runs 20
    python -m talkinghead.benchmarks.memory --backend torch --variant refiner-s --resolution 256

Native runtimes allocate outside Python's heap (tracemalloc sees none of it), so the child
reads its own high-water mark (VmHWM) after importing the runtime and again after loading
the model and running it; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", required=True)
    ap.add_argument("--file", type=Path, help="exported model (every backend but torch)")
    ap.add_argument("--variant", default="refiner-s", help="eager refiner (torch backend)")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)

    import numpy as np

    from talkinghead.benchmarks.core import vm_hwm_bytes
    from talkinghead.benchmarks.generators import Case, build_generator, open_backend
    from talkinghead.models.refiner import IN_CHANNELS

    if args.backend != "torch" and (args.file is None or not args.file.is_file()):
        ap.error(f"--file must name an exported model for backend {args.backend}")
    model = (
        build_generator(Case(args.variant, args.resolution)) if args.backend == "torch" else None
    )
    after_import = vm_hwm_bytes()
    rt = open_backend(args.backend, model, args.file)
    x = np.zeros((1, IN_CHANNELS, args.resolution, args.resolution), np.float32)
    for _ in range(max(args.runs, 1)):
        rt.run(x)
    rt.close()
    print(json.dumps({"after_import_bytes": after_import, "peak_bytes": vm_hwm_bytes()}))


if __name__ == "__main__":
    main()
