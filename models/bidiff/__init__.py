"""BiDiff (Ding et al. 2023, arXiv 2312.04963): text-to-3D with a 3D and a 2D diffusion guiding each other.

prior3d (the 3D-prior interface, grid shapes), shap_e (Shap-E as a 3D prior), world (procedural 3D
primitives with exact SDFs), grid_prior + train_prior (the world's SDF-grid diffusion prior), multiview (the
2D branch with its ControlNet), volume (the 3D branch), pipeline (the bidirectional sampler, the model
file), train_bidiff, refine (score distillation), metrics (world evaluators), export (meshes, orbit views),
demo, reproduce. See docs/bidiff.md.
"""
