"""Colorization instructions for fine-tuning InstructPix2Pix as a colorizer.

An et al. (2023), "Enhancing Visual Realism: Fine-Tuning InstructPix2Pix for Advanced Image
Colorization", pair every (grayscale, color) image with one of many differently worded colorization
instructions (they had ChatGPT write them), so the fine-tuned model answers to the many ways a user
may phrase the request. The list below is our own wording of that idea: same intent, varied verbs,
nouns and adjectives, short and long forms.
"""

from __future__ import annotations

import random

DEFAULT_INSTRUCTION = "Colorize this black and white photo with natural, realistic colors"

INSTRUCTIONS: tuple[str, ...] = (
    DEFAULT_INSTRUCTION,
    "colorize this photo",
    "Colorize the image",
    "add natural colors to the black and white picture",
    "Add color to this grayscale image",
    "Make this photo colorful",
    "Turn this black-and-white photograph into a color photograph",
    "Convert the grayscale picture to full color",
    "Give this monochrome image realistic colors",
    "Restore the colors of this old photo",
    "Bring this black and white picture to life with color",
    "Paint this grayscale photo in lifelike colors",
    "Fill in the missing colors",
    "Make it a color photo",
    "Recolor this image so it looks like it was shot on a modern color camera",
    "Add vivid but believable colors to this photograph",
    "Render this monochrome scene in natural color",
    "Turn the gray tones into realistic colors",
    "Colourise this black and white picture",
    "Please colorize this old black and white image",
    "Can you add colors to this photo?",
    "Apply realistic coloring to the grayscale image",
    "Make this look like a color picture",
    "Change this from black and white to color",
    "Show this scene in color",
    "Give the picture its true colors back",
    "Add lifelike hues to this monochrome shot",
    "Transform the grayscale photo into a vibrant, natural-looking color image",
    "Colorize with natural skin tones, sky and vegetation colors",
    "Add colors that match the real world",
    "Convert this monochrome photograph into a realistic color version",
    "Make the black and white image colored",
    "Infuse this grayscale picture with natural color",
    "Tint this photo with realistic colors",
    "Give this vintage black-and-white photo a faithful color restoration",
    "Turn this into a full-color image",
    "Add color",
    "Color it in",
    "Colorize",
    "Make the photo look as if it had been taken in color",
    "Replace the shades of gray with plausible real colors",
    "Add warm, natural colors to this grayscale snapshot",
    "Bring color to this black and white scene",
    "Produce a colored version of this monochrome image",
    "Realistically color this gray photo",
    "Restore natural color to this faded grayscale photograph",
    "Give every object in this black and white picture its natural color",
    "Make this grayscale image look like a modern color photograph",
    "Add true-to-life colors to the monochrome picture",
    "Hand-color this black and white photo the way a careful artist would",
)


def sample_instruction(rng: random.Random) -> str:
    """One instruction drawn uniformly from `INSTRUCTIONS` with the caller's seeded `rng`."""
    return rng.choice(INSTRUCTIONS)
