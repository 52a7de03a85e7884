"""BiDiff's training data from a folder of meshes with captions (the issue's documented layout):

    FOLDER/
      chair_01.glb        a mesh (.glb .gltf .obj .ply .stl .off); all geometry of a scene is merged
      chair_01.txt        its caption, one line ("a red wooden chair")
      ...

Each mesh is centred on its bounding box and scaled so its longest half-extent is `EXTENT` (inside the
world's [-1, 1]³ cube, as the world's scenes). Its signed distance and surface colour (vertex colours;
face colours or textures converted to vertex colours by trimesh; light grey without any) are sampled on a
`grid_resolution`³ grid (common/mesh_sdf.py: exact within the SDF's truncation), which becomes the scene's
shape: the trainers render their views from it and sample their target grid from it, as they do with the
world's exact shapes. Grids are cached in `cache_dir` (one `.safetensors` per mesh and resolution), so a
resumed or repeated run does not recompute them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common.errors import InputError
from ..common.isosurface import grid_points
from ..common.mesh_io import read_mesh
from ..common.mesh_sdf import mesh_sdf
from .grid_prior import TRUNC
from .prior3d import Shape3D, grid_shape

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")
EXTENT = 0.8  # half of the longest side after normalisation (world units)
DEFAULT_COLOR = 0.8


@dataclass
class MeshScene:
    """One mesh of the folder as the trainers see a world scene: fields, shape and caption."""

    shape: Shape3D
    caption: str

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        return self.shape.sdf(points)

    def color(self, points: torch.Tensor) -> torch.Tensor:
        return self.shape.color(points)

    def shape3d(self) -> Shape3D:
        return self.shape


class MeshFolder:
    """The folder's (mesh, caption) pairs in name order; `scene(i)` builds (or reads from the cache) item i."""

    def __init__(self, folder: str | Path, grid_resolution: int = 32, cache_dir: str | Path | None = None):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise InputError(
                "data", "a folder of meshes with .txt captions", f"'{self.folder}' is not a folder"
            )
        self.meshes = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
        if not self.meshes:
            raise InputError(
                "data", f"mesh files ({' '.join(MESH_SUFFIXES)}) with captions", f"none in '{self.folder}'"
            )
        missing = [p.name for p in self.meshes if not p.with_suffix(".txt").is_file()]
        if missing:
            raise InputError(
                "data", "a caption file <name>.txt beside every mesh", f"none for {', '.join(missing[:5])}"
            )
        self.grid_resolution = grid_resolution
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def __len__(self) -> int:
        return len(self.meshes)

    def vocabulary(self) -> list[str]:
        """Every caption word (the 3D branch's word embeddings; grid_prior.tokenize splits the same way)."""
        words = set()
        for path in self.meshes:
            words.update(
                path.with_suffix(".txt")
                .read_text(encoding="utf-8")
                .lower()
                .replace(",", " ")
                .replace(".", " ")
                .split()
            )
        return sorted(words)

    def scene(self, index: int) -> MeshScene:
        path = self.meshes[index]
        caption = path.with_suffix(".txt").read_text(encoding="utf-8").strip().splitlines()
        if not caption or not caption[0].strip():
            raise InputError("data", f"a caption in {path.with_suffix('.txt').name}", "an empty file")
        grid = self._grid(path)
        return MeshScene(grid_shape(grid, caption[0].strip(), f"mesh:{path.name}"), caption[0].strip())

    def _grid(self, path: Path) -> torch.Tensor:
        if self.cache_dir is None:
            return mesh_grid(path, self.grid_resolution)
        from safetensors.torch import load_file, save_file

        key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        cached = self.cache_dir / f"{path.stem}-{key}-{self.grid_resolution}.safetensors"
        if cached.is_file():
            return load_file(str(cached))["grid"]
        grid = mesh_grid(path, self.grid_resolution)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        save_file({"grid": grid.contiguous()}, str(cached))
        return grid


def mesh_grid(path: str | Path, resolution: int) -> torch.Tensor:
    """[4, R, R, R] world-space grid (SDF in world units, colour in [0, 1]) of the normalised mesh."""
    mesh = read_mesh(path)
    vertices = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces, dtype=torch.long)
    lo, hi = vertices.amin(0), vertices.amax(0)
    scale = float((hi - lo).amax()) / 2
    if scale <= 0:
        raise InputError("data", "a mesh with extent", f"'{Path(path).name}' is a point")
    vertices = (vertices - (lo + hi) / 2) * (EXTENT / scale)
    points = grid_points(resolution, 1.0, dtype=torch.float32).reshape(-1, 3)
    sdf, color = mesh_sdf(points, vertices, faces, vertex_colors(mesh), max_distance=TRUNC)
    return torch.cat([sdf[:, None], color], 1).T.reshape(4, resolution, resolution, resolution)


def vertex_colors(mesh) -> torch.Tensor:
    """[N, 3] sRGB in [0, 1]: vertex colours, face colours or a texture as trimesh converts them, else grey."""
    visual = getattr(mesh, "visual", None)
    try:
        if visual is not None and visual.kind == "texture":
            visual = visual.to_color()
        if visual is not None and visual.kind in ("vertex", "face"):
            colors = torch.tensor(visual.vertex_colors[:, :3], dtype=torch.float32) / 255
            if len(colors) == len(mesh.vertices):
                return colors
    except Exception:  # a material trimesh cannot convert: the mesh still trains, in grey
        pass
    return torch.full((len(mesh.vertices), 3), DEFAULT_COLOR)


class WorldScenes:
    """The 3D world's first `count` scenes of `seed`, behind the same `scene(i)` as a mesh folder."""

    def __init__(self, seed: int, count: int):
        self.seed, self.count = seed, count

    def __len__(self) -> int:
        return self.count

    def vocabulary(self) -> list[str]:
        from .world import world_vocabulary

        return world_vocabulary()

    def scene(self, index: int):
        from .world import make_scene

        return make_scene(self.seed, index)


def training_scenes(data: str | None, world_seed: int, world_scenes: int, cache_dir: Path | None = None):
    """The trainers' scenes: the mesh folder `data` when given, else the 3D world."""
    if data:
        return MeshFolder(data, cache_dir=cache_dir)
    return WorldScenes(world_seed, world_scenes)


def scenes_of(cfg):
    """A trainer config's scenes (its `data`, `world_seed`, `world_scenes`); mesh grids cached in OUT/mesh_grids."""
    return training_scenes(
        cfg.data, cfg.world_seed, cfg.world_scenes, Path(cfg.out).expanduser() / "mesh_grids"
    )
