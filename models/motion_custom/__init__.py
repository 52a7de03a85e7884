"""Customizing Motion (Materzynska et al. 2023, arXiv 2312.04966): teach a text-to-video model a motion."""
