"""Colorization: InstructPix2Pix fine-tuned for grayscale-to-color (An et al. 2023)."""
