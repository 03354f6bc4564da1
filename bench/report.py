"""The one-line convention `python -m bench` collects: a benchmark script prints, beside its own report,

    BENCH {"figure": "...", "value": 1.23, "unit": "s", "baseline": 0.4, "baseline_label": "raw COPY",
           "goal": "<= 1", "script": "pipeline_cycle"}

one JSON object per figure (value and baseline measured in the same run; goal from the issue, optional).
`emit()` prints such a line; `parse_line()` reads one back (None for any other line).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

PREFIX = "BENCH "
_GOAL = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Figure:
    figure: str
    value: float
    unit: str = ""
    baseline: float | None = None
    baseline_label: str | None = None
    goal: str | None = None  # "<= 1", ">= 10000", or on the ratio to the baseline: ">= 70%"
    script: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or not math.isfinite(self.value):
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether value satisfies goal; None without a (readable) goal."""
        if self.goal is None:
            return None
        match = _GOAL.match(self.goal.removesuffix("%"))
        if match is None:
            return None
        if self.goal.endswith("%"):  # a goal on the ratio to the baseline, e.g. ">= 70%"
            ratio = self.ratio
            if ratio is None:
                return None
            bound = float(match[2]) / 100
            return {"<=": ratio <= bound, ">=": ratio >= bound, "<": ratio < bound, ">": ratio > bound}[match[1]]
        op, bound = match[1], float(match[2])
        return {"<=": self.value <= bound, ">=": self.value >= bound, "<": self.value < bound,
                ">": self.value > bound}[op]


def emit(figure: str, value: float, unit: str = "", *, baseline: float | None = None,
         baseline_label: str | None = None, goal: str | None = None, script: str = "") -> None:
    """Print one BENCH line (flushed, so a runner reading a pipe sees it even if the script dies later)."""
    fig = Figure(figure, float(value), unit, None if baseline is None else float(baseline), baseline_label, goal,
                 script)
    print(PREFIX + json.dumps({k: v for k, v in asdict(fig).items() if v not in (None, "")}), flush=True)


def parse_line(line: str, script: str = "") -> Figure | None:
    if not line.startswith(PREFIX):
        return None
    try:
        data: Any = json.loads(line[len(PREFIX):])
        base = data.get("baseline")
        return Figure(str(data["figure"]), float(data["value"]), str(data.get("unit", "")),
                      None if base is None else float(base), data.get("baseline_label"), data.get("goal"),
                      str(data.get("script") or script))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
