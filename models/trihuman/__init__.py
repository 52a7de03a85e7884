"""TriHuman (Zhu et al. 2023, arXiv 2312.05161): a real-time, controllable tri-plane human avatar.

skinning (linear blend and dual-quaternion skinning of the deformable template), uv_raster (per-vertex
attributes rasterised into UV space: the motion texture), closest_face (closest surface point among
candidate faces -> texture-cube coordinates (u, v, d)). Pure torch: no CUDA extensions.
triplane (the tri-plane generator: U-Net with 3D-aware convolutions, motion code, tri-plane sampling),
fields (positional encoding, SDF MLP with geometric init and weight norm, IDR colour MLP, NeuS variance),
template (posing: embedded deformation then dual-quaternion skinning; the 18-channel motion texture),
deform (the deformable template's embedded graph, its deformation and regulariser, the pose network),
avatar_field (one frame's fields: residual SDF over the posed template inside its shell, colour, NeuS renders).
"""
