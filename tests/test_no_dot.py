"""`make test` on a machine without Graphviz: strict nbval still passes, the drawings fall back to matplotlib.

The notebooks' stored outputs may have been made with or without ``dot``; :func:`nas_tutorial.drawing.show`
gives the same kinds of output either way (an SVG and ``<Drawing name>``), and the SVG itself is replaced
by ``tests/nbval_sanitize.cfg``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def path_without(program: str, folder: Path) -> str:
    """``$PATH`` with ``program`` hidden: every directory holding it is replaced by a mirror (under
    ``folder``) of symlinks to everything else in it; this venv's ``bin`` comes first."""
    dirs = [str(Path(sys.executable).parent)]
    for i, d in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if d and (Path(d) / program).exists():
            mirror = folder / f"path{i}"
            mirror.mkdir()
            for entry in Path(d).resolve().iterdir():
                if entry.name != program:
                    (mirror / entry.name).symlink_to(entry)
            d = str(mirror)
        dirs.append(d)
    path = os.pathsep.join(dirs)
    assert shutil.which(program, path=path) is None, f"{program} still on {path}"
    return path


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["notebooks/00_start_here.ipynb"])
def test_notebook_passes_strict_nbval_without_dot(notebook, tmp_path):
    env = dict(os.environ, PATH=path_without("dot", tmp_path), NAS_TUTORIAL_FAST="1")
    cmd = [sys.executable, "-m", "pytest", notebook, "--nbval", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
           "-q", "-p", "no:cacheprovider"]  # the options of `make test`
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
