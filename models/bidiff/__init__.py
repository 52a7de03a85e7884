"""BiDiff (Ding et al. 2023, arXiv 2312.04963): text-to-3D with a 3D and a 2D diffusion guiding each other.

prior3d (the 3D-prior interface, grid shapes), shap_e (Shap-E as a 3D prior), world (procedural 3D
primitives with exact SDFs), grid_prior (the world's small SDF-grid diffusion), train_prior. See docs/bidiff.md.
"""
