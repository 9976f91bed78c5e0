"""Small bar charts as plain data for an SVG drawn by the template: no script, no CDN."""
from __future__ import annotations

from dataclasses import dataclass

COLOURS = {"PROCESSED": "#2da44e", "FAILED": "#cf222e", "REJECTED": "#bf8700",
           "RECEIVED": "#8c959f", "PENDING": "#0969da", "DEAD": "#6e7781"}
PALETTE = ("#0969da", "#2da44e", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#6e7781")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]  # x, text under the axis
    legend: list[tuple[str, str]]    # colour, series name
    peak: int


def colour_of(series: str, index: int) -> str:
    """A series' colour: the outcome's own, else one from the palette."""
    return COLOURS.get(series, PALETTE[index % len(PALETTE)])


def stacked_bars(columns: list[str], series: dict[str, list[int]], width: int = 560,
                 height: int = 140, label_every: int = 1) -> Chart:
    """Stacked bars, one per column; `series` maps a name to one value per column."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(columns))]
    peak = max(totals, default=0) or 1
    slot = width / max(len(columns), 1)
    bars: list[Bar] = []
    legend = [(colour_of(name, n), name) for n, name in enumerate(series)]
    for i, column in enumerate(columns):
        bottom = float(height)
        for n, (name, values) in enumerate(series.items()):
            if not values[i]:
                continue
            h = values[i] / peak * (height - 4)
            bottom -= h
            bars.append(Bar(round(i * slot + 1, 1), round(bottom, 1), round(max(slot - 2, 1), 1),
                            round(h, 1), colour_of(name, n), f"{column}: {values[i]} {name}"))
    labels = [(round(i * slot + slot / 2, 1), c) for i, c in enumerate(columns) if i % label_every == 0]
    return Chart(width, height, bars, labels, legend, max(totals, default=0))
