"""Plain-text tables and byte sizes for storectl and the demo."""

from __future__ import annotations

from collections.abc import Collection, Sequence

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size_bytes: int | float) -> str:
    """Format a byte count with a binary unit, like 1.5 GiB."""
    value = float(size_bytes)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    right_columns: Collection[int] = (),
) -> str:
    """Align columns: numbers and the `right_columns` (by index) to the right, others left."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        i in right_columns or (bool(rows) and all(isinstance(row[i], int | float) for row in rows))
        for i in range(len(headers))
    ]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
