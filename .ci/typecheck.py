"""Type-check the project with mypy, as `make typecheck` and `.ci/run` do.

The import namespace maps folders to packages (pyproject's package-dir: ``sdk/`` is
``talkinghead.sdk``), and the editable install serves that mapping through an import hook,
which a type checker does not run. So this builds the same layout as a tree of links in
``build/typecheck`` (``talkinghead/sdk -> ../../../sdk``, ...), which [tool.mypy]'s
mypy_path points at, runs mypy with the project's config, and prints paths as they are in
the repository. Extra arguments go to mypy (default: the packages [tool.mypy] names).

    python .ci/typecheck.py [mypy arguments]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def link_tree() -> dict[str, str]:
    """Build TREE from pyproject's package-dir; returns {path in TREE/: path in ROOT/}."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    top = TREE / "talkinghead"
    top.mkdir(parents=True)
    for f in sorted((ROOT / package_dir["talkinghead"]).glob("*.py*")):
        (top / f.name).symlink_to(os.path.relpath(f, top))
    prefixes = {}
    for package, folder in package_dir.items():
        if package == "talkinghead":
            continue
        link = TREE / package.replace(".", "/")
        link.symlink_to(os.path.relpath(ROOT / folder, link.parent), target_is_directory=True)
        prefixes[f"{link.relative_to(ROOT)}/"] = f"{folder}/"
    prefixes[f"{top.relative_to(ROOT)}/"] = f"{package_dir['talkinghead']}/"
    return prefixes


def main(argv: list[str]) -> int:
    prefixes = link_tree()
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    for stream, out in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
        for line in stream.splitlines(keepends=True):
            for tree_path, repo_path in prefixes.items():
                if line.startswith(tree_path):
                    line = repo_path + line[len(tree_path) :]
                    break
            out.write(line)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
