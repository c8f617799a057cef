"""Loss curves (train and validation, by epoch) as a PNG, drawn with Pillow (no matplotlib needed)."""

from __future__ import annotations

from pathlib import Path

WIDTH, HEIGHT, MARGIN = 800, 480, 60
COLOURS = {"train": (31, 119, 180), "validation": (214, 39, 40)}

Series = dict[str, list[tuple[float, float]]]


def draw_curves(series: Series, path: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    points = [p for values in series.values() for p in values]
    x_max = max([x for x, _ in points] + [1e-9])
    ys = [y for _, y in points] or [0.0, 1.0]
    pad = max((max(ys) - min(ys)) * 0.05, 1e-3)  # the axis spans the losses, not 0..max: small falls show
    y_low, y_high = min(ys) - pad, max(ys) + pad

    def at(x: float, y: float) -> tuple[float, float]:
        px = MARGIN + x / x_max * (WIDTH - 2 * MARGIN)
        py = HEIGHT - MARGIN - (y - y_low) / (y_high - y_low) * (HEIGHT - 2 * MARGIN)
        return px, py

    draw.line([(MARGIN, MARGIN), (MARGIN, HEIGHT - MARGIN), (WIDTH - MARGIN, HEIGHT - MARGIN)], fill="black")
    for fraction in (0.0, 0.5, 1.0):
        y = y_low + fraction * (y_high - y_low)
        draw.text((5, at(0, y)[1] - 6), f"{y:.3f}", fill="black")
    draw.text((WIDTH - MARGIN - 40, HEIGHT - MARGIN + 10), f"epoch {x_max:.1f}", fill="black")
    for row, (name, values) in enumerate(series.items()):
        colour = COLOURS.get(name, (0, 0, 0))
        draw.text((WIDTH - MARGIN - 120, 10 + 16 * row), f"{name} loss", fill=colour)
        xy = [at(x, y) for x, y in values]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for px, py in xy:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], outline=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
