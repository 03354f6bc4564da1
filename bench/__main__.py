"""`make bench` = `python -m bench`: run every benchmark script of bench/ and print one table.

    .venv/bin/python -m bench                   # every script with --quick, 600 s budget each
    .venv/bin/python -m bench --full            # full sizes (100,000 validators, 1,000 sockets), 3600 s each
    .venv/bin/python -m bench --only pipeline_scale api_graphql --markdown bench/out/table.md

A benchmark script is a `bench/<name>.py` with a `__main__` block that accepts `--quick`; helpers without one
are skipped. Each runs as `python -m bench.<name>` in its own process (output kept in bench/out/<name>.log) and
reports its figures as `BENCH {json}` lines (see bench/report.py): value, baseline measured in the same run,
and the goal of the issue that asked for it. The table shows figure | value | baseline | ratio | goal | met.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.report import Figure, parse_line

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
SKIP = {"__init__", "__main__", "report"}


def discover() -> list[str]:
    names = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem in SKIP:
            continue
        text = path.read_text()
        if "__main__" in text and "--quick" in text:
            names.append(path.stem)
    return names


def run_script(name: str, quick: bool, budget: float, out: Path) -> tuple[list[Figure], str]:
    """Run one script; returns its figures and a status word (ok, failed N, timeout)."""
    argv = [sys.executable, "-m", f"bench.{name}"] + (["--quick"] if quick else [])
    log_path = out / f"{name}.log"
    figures: list[Figure] = []
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
        assert proc.stdout is not None
        status = "ok"
        try:
            for line in proc.stdout:  # the budget is checked between lines; a silent hang is caught below
                log.write(line)
                log.flush()
                sys.stdout.write(f"  [{name}] {line}")
                fig = parse_line(line.rstrip("\n"), name)
                if fig is not None:
                    figures.append(fig)
                if time.monotonic() - started > budget:
                    status = "timeout"
                    break
            remaining = max(1.0, budget - (time.monotonic() - started))
            proc.wait(remaining if status == "ok" else 1)
        except subprocess.TimeoutExpired:
            status = "timeout"
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        if status == "ok" and proc.returncode != 0:
            status = f"failed ({proc.returncode})"
    return figures, f"{status}, {time.monotonic() - started:.0f} s"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 0.01 <= abs(value) < 100_000:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.3g}"


def rows(results: dict[str, tuple[list[Figure], str]]) -> list[list[str]]:
    out = []
    for name, (figures, status) in results.items():
        if not figures:
            out.append([f"{name}: no BENCH figures ({status}; see bench/out/{name}.log)", "-", "-", "-", "-", "-"])
        for fig in figures:
            baseline = "-" if fig.baseline is None else f"{_num(fig.baseline)} {fig.unit}".strip()
            if fig.baseline_label and fig.baseline is not None:
                baseline += f" ({fig.baseline_label})"
            ratio = "-" if fig.ratio is None else f"{fig.ratio:.2f}x"
            met = {None: "-", True: "yes", False: "NO"}[fig.met]
            out.append([f"{name}: {fig.figure}", f"{_num(fig.value)} {fig.unit}".strip(), baseline, ratio,
                        fig.goal or "-", met])
    return out


HEAD = ["figure", "value", "baseline (same run)", "ratio", "goal", "met?"]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEAD, *table]) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [HEAD, *table]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full sizes (no --quick)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts")
    parser.add_argument("--budget", type=float, help="seconds per script (default 600 quick, 3600 full)")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = parser.parse_args()
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(names)}")
        names = [n for n in names if n in args.only]
    budget = args.budget or (3600.0 if args.full else 600.0)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    results: dict[str, tuple[list[Figure], str]] = {}
    for name in names:
        print(f"== bench.{name} ({'full' if args.full else 'quick'}, budget {budget:.0f} s)", flush=True)
        results[name] = run_script(name, not args.full, budget, out)
        print(f"== bench.{name}: {results[name][1]}", flush=True)
    table = rows(results)
    print()
    print(text_table(table))
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; logs in bench/out/")
    if args.markdown:
        args.markdown.write_text(markdown_table(table) + "\n")
    failed = [n for n, (_f, status) in results.items() if not status.startswith("ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
