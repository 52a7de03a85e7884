"""Shared, ComfyUI-free building blocks: loading, configs, errors, image helpers, tiny models."""
