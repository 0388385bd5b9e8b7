"""The model heatmap as one inline SVG, its colour-blind-safe palette and the colour scale a
view is shaded on (fitted to its highest score, or shared 0–1), with the text its colour bar
shows: the metric's name and unit, the operation's k and pair count."""

from __future__ import annotations

from markupsafe import Markup, escape
from pydantic import BaseModel

from describer.heads import head_name
from describer.maps.patterns import PATTERNS

_VIRIDIS = [
    "#440154",
    "#482475",
    "#414487",
    "#355f8d",
    "#2a788e",
    "#21918c",
    "#22a884",
    "#44bf70",
    "#7ad151",
    "#bddf26",
    "#fde725",
]
"""matplotlib's viridis at 0, 0.1, …, 1 (dark purple to yellow)."""


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _viridis_r(t: float) -> str:
    """Reversed viridis: light yellow at 0, dark purple at 1, so the highest score is darkest."""
    x = (1.0 - t) * (len(_VIRIDIS) - 1)
    i = min(int(x), len(_VIRIDIS) - 2)
    low, high = _rgb(_VIRIDIS[i]), _rgb(_VIRIDIS[i + 1])
    f = x - i
    return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(low, high, strict=True))


PALETTE = [_viridis_r(i / 100) for i in range(101)]


def sequential(t: float | None) -> str | None:
    """The colour of a shade in [0, 1] (light to dark, 101 steps); None stays None (no score)."""
    if t is None:
        return None
    return PALETTE[round(min(max(t, 0.0), 1.0) * 100)]


def gradient() -> str:
    """The palette as a CSS ``linear-gradient`` for the colour bar."""
    return "linear-gradient(to right, " + ", ".join(f"{PALETTE[i]} {i}%" for i in range(0, 101, 10)) + ")"


SCALES = ("fitted", "shared")


class Scale(BaseModel):
    """The colour scale of a scored view and what its colour bar says."""

    mode: str
    """``fitted`` (0 to the view's highest score) or ``shared`` (0 to 1)."""
    high: float
    """The score shaded darkest."""
    low: float = 0.0
    data_min: float | None
    data_max: float | None
    shared_possible: bool
    """False for a pattern not measured in fractions (nats, positions): always fitted."""
    metric: str
    """What the score is, in a few words ("relation score of capital")."""
    meaning: str
    unit: str
    detail: str
    """The operation's k and pair count, or ""."""

    def shade(self, value: float | None) -> float | None:
        if value is None:
            return None
        return min(max((value - self.low) / (self.high - self.low), 0.0), 1.0)


OPERATION_MEANING = {
    "relation": "share of the operation's pairs whose target is among the head's top k mappings of the source",
    "suppression": "share of the operation's pairs whose target is among the k tokens the head most suppresses for the source",
}


def fit(
    values: list[float],
    mode: str,
    *,
    operation: str | None = None,
    metric: str = "relation",
    pattern: str | None = None,
    k: int | None = None,
    n_pairs: int | None = None,
) -> Scale:
    """The scale of a view whose shown scores are ``values``."""
    top = max(values, default=None)
    bottom = min(values, default=None)
    spec = PATTERNS.get(pattern or "")
    fraction = pattern is None or (spec is not None and spec.unit == "fraction")
    if mode == "shared" and fraction:
        high = 1.0
    else:
        mode = "fitted"
        high = top if top is not None and top > 0 else 1.0
    if operation is not None:
        name, meaning, unit = (
            f"operation {metric} score of {operation}",
            OPERATION_MEANING[metric],
            "fraction",
        )
        parts = [f"k = {k}"] if k is not None else []
        parts += [f"{n_pairs} pairs"] if n_pairs else []
        detail = " · ".join(parts)
    else:
        label = spec.label if spec else pattern or ""
        name = f"attention pattern {pattern}" + (f" ({label})" if label and label != pattern else "")
        meaning, unit, detail = (spec.help if spec else ""), (spec.unit if spec else ""), ""
    return Scale(
        mode=mode,
        high=high,
        data_min=bottom,
        data_max=top,
        shared_possible=fraction,
        metric=name,
        meaning=meaning,
        unit=unit,
        detail=detail,
    )


AVAILABLE = 840
"""Pixels of width the heatmap's cells may take (the top-heads table sits beside it)."""
LEFT, TOP = 30, 18
"""Room for the layer and head labels."""


def cell_size(n_heads: int) -> int:
    """Square cells: the width shared among the heads, at least 4 and at most 28 pixels."""
    return max(4, min(28, AVAILABLE // max(n_heads, 1)))


def _step(cell: int, room: int) -> int:
    """Label every ``step``-th row or column, so labels are at least ``room`` pixels apart."""
    return next(s for s in (1, 2, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 1000, 10**9) if s * cell >= room)


def short(value: float) -> str:
    """A score in at most 4 characters for its cell: ``.41``, ``3.3``, ``12``."""
    if abs(value) < 1:
        text = f"{value:.2f}"
        return text.replace("0.", ".", 1) if value >= 0 else text
    return f"{value:.2g}" if abs(value) < 10 else f"{value:.0f}"


def heatmap_svg(
    cells: list[list[dict]],
    colours: list[list[str | None]],
    base: str,
    *,
    scored: bool,
    shades: list[list[float | None]] | None = None,
    values: bool = False,
) -> Markup:
    """The heatmap as one SVG: a linked ``<rect>`` per head with its ``<title>``; no score (or
    no description) hatched grey with a border. Built here rather than in the template because
    a Jinja loop over 5,000 cells dominated the page's time; every text is escaped the same."""
    n_layers = len(cells)
    n_heads = len(cells[0]) if cells else 0
    cell = cell_size(n_heads)
    gap = 1 if cell >= 8 else 0
    width, height = LEFT + n_heads * cell, TOP + n_layers * cell
    base = escape(base)
    parts = [
        f'<svg class="heatmap" id="heatmap" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" data-cell="{cell}" role="group" '
        f'aria-label="{n_layers} layers × {n_heads} heads">'
        '<defs><pattern id="no-score" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eeeeee"/>'
        '<rect width="2" height="6" fill="#a0a0a0"/></pattern></defs>'
        '<g class="axis" font-size="10">'
    ]
    step = _step(cell, 18)
    for h in range(0, n_heads, step):
        parts.append(
            f'<text x="{LEFT + h * cell + cell / 2:g}" y="{TOP - 5}" text-anchor="middle">{h}</text>'
        )
    step = _step(cell, 12)
    for layer in range(0, n_layers, step):
        parts.append(
            f'<text x="{LEFT - 4}" y="{TOP + layer * cell + cell / 2 + 3.5:g}" text-anchor="end">{layer}</text>'
        )
    parts.append("</g>")
    size = cell - gap
    font = f"{cell * 0.42:.1f}"
    for layer, row in enumerate(cells):
        y = TOP + layer * cell
        for c in row:
            h = c["head"]
            spec = head_name(layer, h)
            score = c["score"]
            shown = (f" ({score:.2f})" if score is not None else " (no score)") if scored else ""
            title = escape(f"{spec}{shown}: {c['line'] or 'not described'}")
            colour = colours[layer][h]
            x = LEFT + h * cell
            if colour is None:
                paint = 'class="cell none"', 'fill="url(#no-score)" stroke="#8a8a8a" stroke-width="1"'
            else:
                paint = 'class="cell"', f'fill="{colour}"'
            data = f' data-score="{score:.4g}"' if scored and score is not None else ""
            parts.append(
                f'<a {paint[0]} href="{base}/heads/{spec}" data-head="{spec}"{data} aria-label="{title}">'
                f'<rect x="{x}" y="{y}" width="{size}" height="{size}" {paint[1]}/><title>{title}</title>'
            )
            if values and score is not None:
                dark = shades is not None and (shades[layer][h] or 0) > 0.55
                parts.append(
                    f'<text class="value" x="{x + size / 2:g}" y="{y + size / 2:g}" font-size="{font}" '
                    f'fill="{"#fff" if dark else "#111"}">{short(score)}</text>'
                )
            parts.append("</a>")
    parts.append("</svg>")
    return Markup("".join(parts))
