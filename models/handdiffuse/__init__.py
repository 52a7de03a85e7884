"""HandDiffuse (Lin et al. 2023, arXiv 2312.04867): two-hand interaction motion by diffusion.

hand (open kinematic hand, FK/IK), rotations (6D, swing, Kabsch), motion (HAND_MOTION), world
(procedural two-hand interactions), metrics, losses (interaction loss), denoiser, sampler, pipeline
(HandDiffusion, model file), train, poses (keyframe makers), render, export (BVH, npz). See docs/handdiffuse.md.
"""
