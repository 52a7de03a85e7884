"""The main job's contact sheet (scripts/contact_sheet.py): a row per workflow, panels where they belong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import contact_sheet as cs  # noqa: E402


def _api(folder: Path, slug: str, inputs: dict) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{slug}.json").write_text(json.dumps({"1": {"class_type": "X", "inputs": inputs}}))


def test_rows_panels_and_captions(tmp_path):
    api, out = tmp_path / "api", tmp_path / "output"
    out.mkdir()
    _api(api, "edit", {"source_prompt": "a cat", "target_prompt": "a dog", "steps": 3})
    _api(api, "gen", {"prompt": "two circles"})
    _api(api, "unrun", {"prompt": "never ran"})
    colors = {"edit_input_photo.png": (255, 0, 0), "edit_edit_edited_00001_.png": (0, 255, 0),
              "gen_gen_00001_.png": (0, 0, 255), "gen_gen_00002_.png": (255, 255, 0)}  # fmt: skip
    for name, color in colors.items():
        Image.new("RGB", (64, 32), color).save(out / name)  # small and wide: scaled up, kept whole
    (out / "edit_report.txt").write_text("not an image")
    sheet = cs.contact_sheet(out, api)
    row_h = cs.CAPTION_H + cs.PANEL + cs.LABEL_H + cs.MARGIN
    assert sheet.size == (
        cs.MARGIN * 2 + 2 * cs.PANEL + cs.GAP,
        cs.MARGIN + 2 * row_h,
    )  # 2 rows, 2 panels max

    def centre(row, col):
        return sheet.getpixel(
            (
                cs.MARGIN + col * (cs.PANEL + cs.GAP) + cs.PANEL // 2,
                cs.MARGIN + row * row_h + cs.CAPTION_H + cs.PANEL // 2,
            )
        )

    assert [centre(0, 0), centre(0, 1)] == [(255, 0, 0), (0, 255, 0)]  # edit: the input first
    assert [centre(1, 0), centre(1, 1)] == [(0, 0, 255), (255, 255, 0)]
    assert cs.caption_of(api / "edit.json") == '"a cat"  ->  "a dog"'
    assert cs.caption_of(api / "gen.json") == '"two circles"'
    assert cs.label_of(out / "edit_input_photo.png", "edit") == "input: photo"
    assert cs.label_of(out / "edit_edit_edited_00001_.png", "edit") == "edited"
    assert cs.label_of(out / "gen_gen_00002_.png", "gen") == "output 2"
    # a second run of the same ComfyUI counts on (00009 ...): the sheet numbers this run's files from 1
    names = ["gen_refined_00009_.png", "gen_refined_00010_.png", "gen_gen_00011_.png", "gen_input_photo.png"]
    assert list(cs.ranked_labels([out / n for n in names], "gen").values()) == [
        "refined", "refined 2", "output 1", "input: photo"
    ]  # fmt: skip


def test_no_outputs_says_so(tmp_path):
    _api(tmp_path / "api", "gen", {"prompt": "x"})
    (tmp_path / "output").mkdir()
    with pytest.raises(FileNotFoundError, match="run the main job first"):
        cs.contact_sheet(tmp_path / "output", tmp_path / "api")
    assert cs.main(["--output", str(tmp_path / "output")]) == 2


def test_an_animation_shows_four_evenly_spaced_frames(tmp_path):
    api, out = tmp_path / "api", tmp_path / "output"
    out.mkdir()
    _api(api, "hands", {"label": "clap", "seconds": 4.0})
    frames = [Image.new("RGB", (32, 32), (25 * k, 0, 255 - 25 * k)) for k in range(10)]
    frames[0].save(out / "hands_clap_00001_.webp", save_all=True, append_images=frames[1:], lossless=True)
    sheet = cs.contact_sheet(out, api)
    row_top = cs.MARGIN + cs.CAPTION_H + cs.PANEL // 2
    got = [sheet.getpixel((cs.MARGIN + c * (cs.PANEL + cs.GAP) + cs.PANEL // 2, row_top)) for c in range(4)]
    assert got == [(0, 0, 255), (75, 0, 180), (150, 0, 105), (225, 0, 30)]  # frames 0, 3, 6, 9
    assert cs.caption_of(api / "hands.json") == 'label "clap"'


def test_a_trajectory_workflow_names_its_joint_paths(tmp_path):
    """Each Trajectory from Points node's hand, joint and point count reach the row's caption, in graph order."""
    nodes = {
        "5": {
            "class_type": "T",
            "inputs": {"hand": "right", "joint": "wrist", "points": "0: 1, 2, 3\n\n9: 4, 5, 6"},
        },
        "6": {"class_type": "T", "inputs": {"hand": "left", "joint": "index tip", "points": "0: 1, 2, 3"}},
        "2": {"class_type": "G", "inputs": {"label": "wave", "trajectory": ["6", 0]}},
    }
    (tmp_path / "traj.json").write_text(json.dumps(nodes))
    assert cs.caption_of(tmp_path / "traj.json") == (
        'label "wave", paths: right wrist through 2 points; left index tip through 1 point'
    )


def test_the_main_job_drops_an_earlier_runs_files_of_a_workflow(tmp_path):
    """A ComfyUI whose output folder persists numbers each run's files anew: the main job keeps only the
    latest run's files of a workflow (what the contact sheet and thumbnails show), not another's."""
    import comfy_host

    old = [tmp_path / "infedit_edited_00001_.png", tmp_path / "infedit_report.txt"]
    new = [tmp_path / "infedit_edited_00002_.png", tmp_path / "infedit_report.txt"]
    other = [tmp_path / "infedit_batch_out_00001_.png", tmp_path / "colorize_color_00001_.png"]
    for p in old + new + other:
        p.write_bytes(b"x")
    dropped = comfy_host.drop_stale(tmp_path, "infedit", new, ["infedit", "infedit_batch", "colorize"])
    assert dropped == [tmp_path / "infedit_edited_00001_.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in set(new + other))
