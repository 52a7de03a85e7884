"""The avatar world's held-out measurement (issue 17's targets): held-out motions seen from held-out views.

Rows, all on the same frames and views at `size` px (the world's ground truth: the clothed character
rendered by our rasteriser):
- `skinned template`: the textured template posed by skinning alone (no clothing dynamics), rendered by the
  world's own renderer with the world's exact texture and lighting: the paper's "template alone" baseline;
- `deformed template`: the same renderer on the avatar's deformable template (stage 1), to show what the
  template stage gives;
- `TriHuman avatar`: the trained avatar's NeuS render and its geometry (the subdivided template projected
  to the SDF's zero level, Sec. 3.5).
PSNR over the whole image (black background), mask IoU (avatar: opacity > 0.5), and Chamfer distance to
the ground-truth clothed mesh (metrics.py).
"""

from __future__ import annotations

import torch

from . import world
from .avatar import TriHumanAvatar
from .data import MultiViewSequence
from .metrics import chamfer, mask_iou, psnr
from .render import render_frame
from .train import frame_window

ROWS = ("skinned template", "deformed template", "TriHuman avatar")


def held_out(seed: int = 0, sequences: int = 4, frames: int = 6, size: int = 64):
    """World test motions (the 4th is a 'turn', a held-out motion type) in the held-out views."""
    return [world.make_sequence(seed, "test", i, frames, "test", size) for i in range(sequences)]


def evaluate(avatar: TriHumanAvatar, seqs, stride: int = 1, progress=None) -> dict[str, dict[str, float]]:
    """Mean PSNR, IoU and Chamfer per row over every `stride`-th frame of world sequences (make_sequence)."""
    template = world.avatar_template()
    sums = {r: {"psnr": 0.0, "iou": 0.0, "chamfer": 0.0} for r in ROWS}
    count = 0
    for s in seqs:
        mv = MultiViewSequence(torch.cat([s.history_poses, s.poses]), torch.cat([s.history_translations, s.translations]),
                               s.images, s.masks, s.masks.float(), s.K, s.world_to_camera, history=2)  # fmt: skip
        size = s.images.shape[-2]
        for t in range(0, s.images.shape[0], stride):
            gt, gt_mask = s.images[t], s.masks[t]
            with torch.no_grad():
                posed, feats, roots, _, k = frame_window(avatar, mv, t)
            meshes = {"skinned template": s.skinned[t].float(), "deformed template": posed[k].float()}
            for row, verts in meshes.items():
                rgb, mask, _ = world.render(template, verts, s.K, s.world_to_camera, size)
                sums[row]["psnr"] += psnr(rgb, gt)
                sums[row]["iou"] += mask_iou(mask, gt_mask)
                sums[row]["chamfer"] += chamfer(verts, template.faces, s.vertices[t], template.faces)
            bound = avatar.bind(posed, feats, roots, k)
            out = render_frame(bound, s.K, s.world_to_camera, size, size)
            mesh_v, mesh_f = bound.mesh()
            sums["TriHuman avatar"]["psnr"] += psnr(out["image"], gt)
            sums["TriHuman avatar"]["iou"] += mask_iou(out["mask"] > 0.5, gt_mask)
            sums["TriHuman avatar"]["chamfer"] += chamfer(mesh_v, mesh_f, s.vertices[t], template.faces)
            count += 1
            if progress is not None:
                progress(count)
    return {r: {k: v / count for k, v in m.items()} for r, m in sums.items()}
