"""One PNG that shows what the main job did: a row per workflow, its prompt, its inputs and outputs.

`comfy_host.py run-workflows` writes `<output>/contact_sheet.png` after the run; README shows the copy in
`docs/contact_sheet.png` (refresh it with `python scripts/contact_sheet.py --output ./output --docs`).
Panels are the main job's files (`<slug>_input_<name>` for inputs, then the outputs; four evenly spaced
frames of an animation), each labelled with its role; the row's caption is the workflow's prompt(s) from its API
twin, so a reader can check the picture against the words.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_host import API_WORKFLOWS, INPUT_TAG, REPO_ROOT  # noqa: E402

PANEL, GAP, LABEL_H, CAPTION_H, MARGIN = 160, 8, 18, 40, 12
IMAGE_SUFFIXES = (".png", ".webp", ".jpg")
BACKGROUND, TEXT, DIM = (28, 28, 30), (235, 235, 235), (160, 160, 165)
DOCS_COPY = REPO_ROOT / "docs" / "contact_sheet.png"


def caption_of(api_path: Path) -> str:
    """The words the workflow acts on: source -> target prompt, an instruction or a prompt."""
    inputs = [n.get("inputs", {}) for n in json.loads(api_path.read_text()).values()]
    text = {k: v for i in inputs for k, v in i.items() if isinstance(v, str)}
    if "source_prompt" in text and "target_prompt" in text:
        return f'"{text["source_prompt"]}"  ->  "{text["target_prompt"]}"'
    for key in ("instruction", "prompt"):
        if key in text:
            return f'"{text[key]}"'
    if "label" in text:  # HandDiffuse: the action, and the keyframe poses and joint paths if any
        poses = f', poses "{text["poses"]}"' if "poses" in text else ""
        paths = [_path_of(i) for i in inputs if "joint" in i and "points" in i]
        return f'label "{text["label"]}"{poses}' + (f", paths: {'; '.join(paths)}" if paths else "")
    return ""


def _path_of(inputs: dict) -> str:
    """'right wrist through 4 points' from a Trajectory from Points node's inputs."""
    count = sum(1 for line in str(inputs["points"]).splitlines() if line.strip())
    return f"{inputs['hand']} {inputs['joint']} through {count} point{'' if count == 1 else 's'}"


def label_of(path: Path, slug: str, rank: int | None = None) -> str:
    """'input: papernodes_demo_color', 'edited', 'swiftbrush 2', ... from the main job's file names. ComfyUI's
    file counter numbers a file unless `rank` (its place among this run's files of that name) is given: the
    counter keeps growing with every run of the same ComfyUI, the rank does not."""
    name = path.stem[len(slug) + 1 :] if path.stem.startswith(slug + "_") else path.stem
    if name.startswith(INPUT_TAG.strip("_") + "_"):
        return "input: " + name[len(INPUT_TAG) - 1 :].removeprefix("papernodes_demo_")
    name = name.removeprefix(slug + "_")
    m = re.fullmatch(r"(?:(.*)_)?(\d{5})_?", name)
    if m:
        base, index = (m.group(1) or "output").replace("_", " "), rank or int(m.group(2))
        return base + (f" {index}" if index > 1 or base == "output" else "")
    return name.replace("_", " ")


def ranked_labels(paths: list[Path], slug: str) -> dict[Path, str]:
    """Labels of one workflow's panels, the counted ones numbered 1, 2, ... per name in file order."""
    seen: dict[str, int] = {}
    out = {}
    for path in paths:
        unranked = label_of(path, slug, rank=1)
        seen[unranked] = seen.get(unranked, 0) + 1
        out[path] = label_of(path, slug, rank=seen[unranked])
    return out


def panels_of(slug: str, output_dir: Path) -> list[Path]:
    files = sorted(p for p in output_dir.glob(f"{slug}_*") if p.suffix.lower() in IMAGE_SUFFIXES)
    inputs = [p for p in files if INPUT_TAG in p.name]
    return inputs + [p for p in files if p not in inputs]


ANIMATION_PANELS = 4  # an animation shows this many evenly spaced frames, so motion is visible


def frames_of(path: Path) -> list[tuple[int, int]]:
    """(frame index, frame count) of the frames a file contributes: one for a still, four for an animation."""
    with Image.open(path) as im:
        n = getattr(im, "n_frames", 1)
    if n < 2:
        return [(0, 1)]
    return [(round(k * (n - 1) / (ANIMATION_PANELS - 1)), n) for k in range(ANIMATION_PANELS)]


def _frame(path: Path, index: int = 0) -> Image.Image:
    with Image.open(path) as im:
        im.seek(index)
        frame = im.convert("RGB")
    scale = PANEL / max(frame.size)
    size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
    small = max(frame.size) < PANEL  # keep small outputs crisp (the demo models draw at 128 px)
    return frame.resize(size, Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text


def contact_sheet(output_dir: Path, api_dir: Path = API_WORKFLOWS) -> Image.Image:
    """The sheet for every API workflow that has files in `output_dir`."""
    rows = []
    for api in sorted(api_dir.glob("*.json")):
        panels = [(f, i, n) for f in panels_of(api.stem, output_dir) for i, n in frames_of(f)]
        if panels:
            rows.append((api.stem, caption_of(api), panels))
    if not rows:
        raise FileNotFoundError(f"no main-job outputs in {output_dir}: run the main job first")
    width = MARGIN * 2 + max(len(p) for _, _, p in rows) * (PANEL + GAP) - GAP
    row_h = CAPTION_H + PANEL + LABEL_H + MARGIN
    sheet = Image.new("RGB", (width, MARGIN + len(rows) * row_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title_font, font = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    y = MARGIN
    for slug, caption, panels in rows:
        draw.text((MARGIN, y), slug, font=title_font, fill=TEXT)
        draw.text((MARGIN, y + 19), _fit(draw, caption, font, width - 2 * MARGIN), font=font, fill=DIM)
        top = y + CAPTION_H
        labels = ranked_labels(list(dict.fromkeys(path for path, _, _ in panels)), slug)
        for i, (path, index, count) in enumerate(panels):
            x = MARGIN + i * (PANEL + GAP)
            frame = _frame(path, index)
            sheet.paste(frame, (x + (PANEL - frame.width) // 2, top + (PANEL - frame.height) // 2))
            text = labels[path] + (f" · frame {index + 1}/{count}" if count > 1 else "")
            label = _fit(draw, text, font, PANEL)
            draw.text((x, top + PANEL + 3), label, font=font, fill=DIM)
        y += row_h
    return sheet


def write_contact_sheet(output_dir: Path, docs: bool = False) -> Path:
    dest = output_dir / "contact_sheet.png"
    contact_sheet(output_dir).save(dest, optimize=True)
    if docs:  # 256 colours: a third of the size in the repository every user clones
        Image.open(dest).quantize(256, dither=Image.Dither.NONE).save(DOCS_COPY, optimize=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output", help="the main job's output folder")
    parser.add_argument(
        "--docs", action="store_true", help=f"also copy it to {DOCS_COPY.relative_to(REPO_ROOT)}"
    )
    args = parser.parse_args(argv)
    try:
        print(f"wrote {write_contact_sheet(Path(args.output), args.docs)}")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
