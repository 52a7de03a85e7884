"""Shared, ComfyUI-free building blocks every method may use (never a method's own code).

Loading (diffusers folders, LDM single files, LoRA), configs, errors, schedulers, text encoding, image
helpers, tiny seeded models; training (the one trainer skeleton) and cli; domain pieces: pose, controlnet,
image_prompt (IP-Adapter + CLIP vision), video_io, camera, mesh_io.
"""
