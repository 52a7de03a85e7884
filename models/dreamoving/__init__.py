"""DreaMoving (Feng et al. 2023, arXiv 2312.05107): pose/depth-driven human dance video.

Motion-block U-Net (AnimateDiff motion modules), Video ControlNet, Content Guider (decoupled
multi-context cross-attention), sliding context windows, trainer. Pose, ControlNet loading, image prompts
and video I/O are shared pieces in models/common/. Pure torch/diffusers.
"""
