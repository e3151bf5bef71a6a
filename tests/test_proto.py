"""The generated gRPC modules in store/_pb match the .proto files in proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_current() -> None:
    result = subprocess.run(
        [sys.executable, "tools/gen_proto.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"tools/gen_proto.py --check exited with {result.returncode}; run `make proto` and "
        f"commit store/_pb.\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
