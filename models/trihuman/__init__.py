"""TriHuman (Zhu et al. 2023, arXiv 2312.05161): a real-time, controllable tri-plane human avatar.

skinning (linear blend and dual-quaternion skinning of the deformable template), uv_raster (per-vertex
attributes rasterised into UV space: the motion texture), closest_face (closest surface point among
candidate faces -> texture-cube coordinates (u, v, d)). Pure torch: no CUDA extensions.
"""
