"""Run every benchmark in turn and print one side-by-side table of all their rows.

Each benchmark runs as its own process and writes bench/results/<name>.json;
this script then merges them into bench/results/summary.json and
bench/results/summary.md. `make bench` runs it with the defaults.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, RESULTS_DIR, describe_machine, machine_info, progress, utc_now

BENCHMARKS = ("raw_ceiling", "sdk_large", "sdk_small", "listing", "erasure")
QUICK_ARGUMENTS = {
    "raw_ceiling": ["--repeat", "2", "--stream-mib", "256", "--duration-s", "1"],
    "sdk_large": ["--repeat", "2", "--size-mib", "128"],
    "sdk_small": ["--repeat", "2", "--duration-s", "1"],
    "listing": [
        *("--repeat", "2", "--page-samples", "5", "--keys", "20000"),
        *("--cluster-dir", str(RESULTS_DIR / "listing-cluster-quick")),
    ],
    "erasure": [
        *("--repeat", "2", "--size-mib", "128", "--codec-seconds", "0.2"),
        *("--repair-mib", "128"),
    ],
    "profile_sdk": ["--size-mib", "128", "--small-duration-s", "2"],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", choices=[*BENCHMARKS, "profile_sdk"], help="run only these"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repetitions, for a smoke run"
    )
    parser.add_argument(
        "--listing-keys", type=int, default=None, help="keys in the large listing bucket"
    )
    parser.add_argument(
        "--reuse-listing",
        action="store_true",
        help="reuse the keys already loaded in bench/results/listing-cluster",
    )
    parser.add_argument("--profile", action="store_true", help="also run profile_sdk.py")
    return parser.parse_args()


def script_arguments(name: str, args: argparse.Namespace) -> list[str]:
    arguments = list(QUICK_ARGUMENTS[name]) if args.quick else []
    if name == "listing":
        if args.listing_keys is not None:
            arguments += ["--keys", str(args.listing_keys)]
        if args.reuse_listing:
            arguments.append("--reuse")
    return arguments


def run_benchmark(name: str, arguments: list[str]) -> dict[str, Any]:
    """Run bench/<name>.py; return its status and how long it took."""
    command = [sys.executable, str(BENCH_DIR / f"{name}.py"), *arguments]
    progress(f"running {' '.join(command)}")
    start_s = time.perf_counter()
    result = subprocess.run(command, check=False)
    elapsed_s = time.perf_counter() - start_s
    if result.returncode != 0:
        progress(f"{name} failed with exit code {result.returncode}")
    return {"exit_code": result.returncode, "elapsed_s": round(elapsed_s, 1)}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = "| figure | ours (median) | baseline | baseline (median) | ratio | target | met |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = row["ratio"]
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        lines.append(
            f"| {row['figure']} | {format_value(row['value_median'], row['unit'])} "
            f"| {row['baseline'] or '-'} | {format_value(row['baseline_median'], row['unit'])} "
            f"| {'-' if ratio is None else f'{ratio:.2f}x'} | {row['target_text'] or '-'} "
            f"| {met} |"
        )
    return "\n".join(lines)


def format_value(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def summarize(names: list[str], runs: dict[str, Any], info: dict[str, Any]) -> str:
    """Merge the results of this run into summary.json and return the Markdown summary."""
    sections = [f"Machine: {describe_machine(info)}", f"Finished {utc_now()}."]
    merged: dict[str, Any] = {"machine": info, "runs": runs, "benchmarks": {}}
    for name in names:
        path = RESULTS_DIR / f"{name}.json"
        if runs[name]["exit_code"] != 0 or not path.exists():
            sections.append(f"## {name}\n\nfailed (exit code {runs[name]['exit_code']})")
            continue
        record = json.loads(path.read_text())
        merged["benchmarks"][name] = record
        sections.append(
            f"## {name}\n\nCommand: `{record['command']}` ({runs[name]['elapsed_s']}s, "
            f"load average at end {record['load_average_at_end']})\n\n"
            + markdown_table(record["rows"])
        )
    (RESULTS_DIR / "summary.json").write_text(json.dumps(merged, indent=2) + "\n")
    text = "\n\n".join(sections) + "\n"
    (RESULTS_DIR / "summary.md").write_text(text)
    return text


def main() -> None:
    args = parse_args()
    names = list(args.only or BENCHMARKS)
    if args.profile and "profile_sdk" not in names:
        names.append("profile_sdk")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    info = machine_info(Path(RESULTS_DIR))
    runs = {name: run_benchmark(name, script_arguments(name, args)) for name in names}
    print("\n# Summary\n")
    print(summarize(names, runs, info))
    print(f"written to {RESULTS_DIR / 'summary.md'} and {RESULTS_DIR / 'summary.json'}")
    if any(run["exit_code"] != 0 for run in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
