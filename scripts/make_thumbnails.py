"""Template thumbnails from a main-job run: `example_workflows/<title>.jpg` next to each UI workflow.

ComfyUI's templates browser shows `<name>.jpg` beside `<name>.json` on each card. A thumbnail here is what
the workflow really did on the demo models: its input image(s), then its saved outputs (first frame of an
animation), in a 2x2 grid. Run after the main job:

    bash scripts/demo.sh && python scripts/make_thumbnails.py --output ./output
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_workflows  # noqa: E402  (scripts/ is not a package)
from comfy_host import INPUT_TAG  # noqa: E402

PANEL_H, MAX_PANELS = 192, 4
IMAGE_SUFFIXES = (".png", ".webp", ".jpg")


def panels_for(slug: str, output_dir: Path) -> list[Path]:
    """The main job copies each workflow's inputs and outputs to <output>/<slug>_<name> (comfy_host.py)."""
    files = sorted(p for p in output_dir.glob(f"{slug}_*") if p.suffix.lower() in IMAGE_SUFFIXES)
    inputs = [p for p in files if INPUT_TAG in p.name]
    return (inputs + [p for p in files if p not in inputs])[:MAX_PANELS]


def first_frame(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.seek(0)
        frame = im.convert("RGB")
    w, h = frame.size
    resample = Image.Resampling.NEAREST if h < 96 else Image.Resampling.LANCZOS  # keep tiny outputs crisp
    return frame.resize((max(1, round(w * PANEL_H / h)), PANEL_H), resample)


def grid(paths: list[Path]) -> Image.Image:
    """Up to four panels, two per row: the templates browser shows thumbnails in square cards."""
    frames = [first_frame(p) for p in paths]
    cols = 1 if len(frames) == 1 else 2
    rows = -(-len(frames) // cols)
    cell, gap = PANEL_H, 6
    out = Image.new("RGB", (cols * cell + (cols - 1) * gap, rows * cell + (rows - 1) * gap), (32, 32, 32))
    for i, f in enumerate(frames):
        f.thumbnail((cell, cell))
        x, y = (i % cols) * (cell + gap), (i // cols) * (cell + gap)
        out.paste(f, (x + (cell - f.width) // 2, y + (cell - f.height) // 2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output", help="the main job's output folder")
    args = parser.parse_args(argv)
    missing = []
    for wf in make_workflows.WORKFLOWS:
        paths = panels_for(wf.slug, Path(args.output))
        if not paths:
            missing.append(wf.slug)
            continue
        dest = make_workflows.OUT_DIR / f"{wf.title}.jpg"
        grid(paths).save(dest, quality=85)
        print(f"wrote {dest.relative_to(make_workflows.REPO_ROOT)} from {[p.name for p in paths]}")
    if missing:
        print(f"no outputs for {missing} in {args.output}: run the main job first", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
