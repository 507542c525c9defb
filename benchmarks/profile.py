"""Per-operator time of an ExecuTorch program on this CPU, from the runtime's own ETDump.

``talkinghead profile PACK_OR_PTE`` loads the program with event tracing on, runs it
``runs`` times on ``threads`` XNNPACK threads, and reads the trace with ExecuTorch's
Inspector. XNNPACK reports one event per operator it runs (``Convolution (NHWC, QC8) DWConv
#3``, ``Resize Bilinear (NHWC) #1``...), so the report shows where a frame's time goes:

- per operator: median ms, and its share of the summed operator time;
- per operator kind (convolution, GEMM, resize, convert...): total median ms;
- ``execute_ms``, the median of the whole ``Method::execute``, and ``overhead_ms``: execute
  minus the operator sum. On a small multi-threaded model that gap is the thread pool
  handing work to its threads between operators, not arithmetic.

No ETRecord is needed: the delegate's operator names come with the trace. An ETRecord
(``talkinghead export --etrecord``) gives Inspector the graphs, but it does not map
XNNPACK's operators back to graph nodes: with executorch 1.5.1 their ``op_types`` and
``module_hierarchy`` stay empty, so the operators are named and numbered as XNNPACK runs them.
Writes ``profile.json``, ``profile.md`` and ``profile.png`` (time per operator kind).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import BackendError, InvalidInputError

_ORDINAL = re.compile(r"\s*#\d+$")


@dataclass(frozen=True)
class ProfileConfig:
    threads: int = 2
    runs: int = 30
    warmup: int = 3
    precision: str = "int8"  # which ExecuTorch model of a pack
    seed: int = 0

    def validate(self) -> None:
        if self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise InvalidInputError(
                f"threads and runs must be >= 1 and warmup >= 0, got {self.threads}, "
                f"{self.runs}, {self.warmup}"
            )
        if self.precision not in ("fp32", "int8"):
            raise InvalidInputError(f"precision must be fp32 or int8, got {self.precision!r}")


def read_program(path: str | Path, precision: str = "int8") -> tuple[bytes, str]:
    """(bytes, name) of a ``.pte``, or of a pack's ExecuTorch model of ``precision``.

    A pack's file is read through its manifest hash; a bare ``.pte`` through the header
    check every ExecuTorch load gets. Raises PackError / PackIntegrityError / BackendError.
    """
    from talkinghead.sdk.backends import check_pte_header, read_checked
    from talkinghead.sdk.pack import open_pack

    path = Path(path)
    if path.suffix == ".pte" and path.is_file():
        data = read_checked(path, None)
        name = path.name
    elif path.is_dir() or path.suffix == ".zip":
        with open_pack(path) as pack:
            entry = pack.model(precision, "executorch", "pte")
            data, name = pack.read_verified(entry.file), entry.file
    else:
        raise InvalidInputError(f"profile needs a .pte file or an avatar pack, got {path}")
    check_pte_header(data, name)
    return data, name


def _trace(data: bytes, name: str, cfg: ProfileConfig, etdump: Path) -> None:
    """Run the program with event tracing and write its ETDump to ``etdump``."""
    import torch

    from talkinghead.sdk.backends import set_executorch_threads

    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError as e:
        raise BackendError(f"the ExecuTorch runtime is not installed: {e}") from e
    set_executorch_threads(cfg.threads)
    try:  # verified like every ExecuTorch load here (InternalConsistency, the default)
        module = portable_lib._load_for_executorch_from_buffer(data, enable_etdump=True)
        meta = module.method_meta("forward")
        if meta.num_inputs() != 1:
            raise BackendError(f"{name}: expected 1 input, got {meta.num_inputs()}")
        shape = tuple(meta.input_tensor_meta(0).sizes())
    except BackendError:
        raise
    except Exception as e:
        raise BackendError(f"ExecuTorch could not load {name} for tracing: {e}") from e
    gen = np.random.default_rng(cfg.seed)
    x = torch.from_numpy(gen.uniform(-1, 1, shape).astype(np.float32))
    for _ in range(cfg.warmup):
        module.forward((x,))
    for _ in tqdm(range(cfg.runs), desc=f"profile {name}", leave=False):
        module.forward((x,))
    module.write_etdump_result_to_file(str(etdump))


def _kind(event: str) -> str:
    """The operator kind: its name without the ordinal ('... GEMM #3' -> '... GEMM')."""
    return _ORDINAL.sub("", event)


def summarize(events: list[tuple[str, bool, float]]) -> dict[str, Any]:
    """Figures from (event name, is delegated operator, median ms) rows of one trace."""
    ops = [(n, ms) for n, is_op, ms in events if is_op]
    if not ops:
        raise BackendError(
            "the trace has no operator events: the program is not XNNPACK-delegated, or this "
            "runtime was built without delegate profiling"
        )
    execute = [ms for n, is_op, ms in events if not is_op and n == "Method::execute"]
    op_sum = float(sum(ms for _, ms in ops))
    kinds: dict[str, float] = defaultdict(float)
    for n, ms in ops:
        kinds[_kind(n)] += ms
    execute_ms = float(execute[0]) if execute else float("nan")
    return {
        "execute_ms": execute_ms,
        "operator_sum_ms": op_sum,
        "overhead_ms": execute_ms - op_sum,
        "operators": [{"name": n, "ms": float(ms), "share": float(ms / op_sum)} for n, ms in ops],
        "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
    }


def profile_program(data: bytes, name: str, cfg: ProfileConfig | None = None) -> dict[str, Any]:
    """Trace ``data`` (a ``.pte``) and summarise it (see the module docstring)."""
    from talkinghead.benchmarks.core import machine_info

    cfg = cfg or ProfileConfig()
    cfg.validate()
    try:
        from executorch.devtools import Inspector
    except ImportError as e:
        raise BackendError(f"ExecuTorch's devtools (Inspector) are not installed: {e}") from e
    with tempfile.TemporaryDirectory(prefix="talkinghead-profile-") as tmp:
        etdump = Path(tmp) / "trace.etdp"
        _trace(data, name, cfg, etdump)
        try:
            with warnings.catch_warnings():  # "Output Buffer not found": no tensor dumps asked
                warnings.simplefilter("ignore", UserWarning)
                frame = Inspector(etdump_path=str(etdump)).to_dataframe()
        except Exception as e:
            raise BackendError(f"could not read the ExecuTorch trace of {name}: {e}") from e
    frame = frame[frame["event_block_name"] == "Execute"]
    events = [
        (str(n), bool(d), float(ms))
        for n, d, ms in zip(
            frame["event_name"], frame["is_delegated_op"], frame["p50 (ms)"], strict=True
        )
    ]
    res = summarize(events)
    res.update(program=name, bytes=len(data), config=asdict(cfg), machine=machine_info())
    return res


def write_profile(res: dict[str, Any], out: Path) -> None:
    """profile.json, profile.md and profile.png (median ms per operator kind) under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(res, indent=2) + "\n")
    kinds = list(res["kinds"].items())
    fig, ax = plt.subplots(figsize=(7, 0.35 * (len(kinds) + 1) + 1.2))
    labels = [k for k, _ in kinds] + ["(between operators)"]
    values = [v for _, v in kinds] + [max(res["overhead_ms"], 0.0)]
    ax.barh(labels[::-1], values[::-1], color=["#999"] + ["#3a7"] * len(kinds))
    ax.set_xlabel(f"median ms per frame ({res['config']['threads']} threads)")
    ax.set_title(f"{res['program']}: {res['execute_ms']:.2f} ms per execute")
    fig.tight_layout()
    fig.savefig(out / "profile.png", dpi=110)
    plt.close(fig)
    m = res["machine"]
    lines = [
        f"# Profile of {res['program']}\n",
        f"ExecuTorch ETDump, median of {res['config']['runs']} runs, "
        f"{res['config']['threads']} threads, on {m['cpu']} ({m['cores']} cores, "
        f"load {m['load_average_1min']}).\n",
        f"- whole execute: **{res['execute_ms']:.2f} ms**",
        f"- sum of operators: {res['operator_sum_ms']:.2f} ms",
        f"- between operators (thread hand-offs, dispatch): {res['overhead_ms']:.2f} ms\n",
        "![time per operator kind](profile.png)\n",
        "| operator kind | ms | share |",
        "|---|---|---|",
        *(f"| {k} | {v:.3f} | {v / res['operator_sum_ms']:.1%} |" for k, v in res["kinds"].items()),
        "",
        "| # | operator | ms | share |",
        "|---|---|---|---|",
        *(
            f"| {i} | {o['name']} | {o['ms']:.3f} | {o['share']:.1%} |"
            for i, o in enumerate(res["operators"], 1)
        ),
        "",
    ]
    (out / "profile.md").write_text("\n".join(lines))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``talkinghead profile`` options (the CLI is the one entry point)."""
    p.add_argument("model", help="a .pte file, or an avatar pack (folder or .zip)")
    p.add_argument("--precision", choices=("fp32", "int8"), default="int8", help="pack model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("out/profile"))


def run(args: argparse.Namespace) -> int:
    cfg = ProfileConfig(threads=args.threads, runs=args.runs, precision=args.precision)
    cfg.validate()
    data, name = read_program(args.model, cfg.precision)
    res = profile_program(data, name, cfg)
    write_profile(res, args.out)
    print(
        f"{name}: {res['execute_ms']:.2f} ms per execute, operators {res['operator_sum_ms']:.2f} ms, "
        f"between operators {res['overhead_ms']:.2f} ms ({cfg.threads} threads); "
        f"report in {args.out}/profile.md"
    )
    return 0
