"""Named diffusers schedulers built from a model's scheduler config (never from a hub)."""

from __future__ import annotations

from .errors import InputError

# name -> (diffusers class name, extra config)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
}

# Fields that describe the training noise schedule: the only ones carried over between scheduler classes.
_SCHEDULE_FIELDS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "steps_offset",
    "timestep_spacing",
)


def make_scheduler(name: str, model_config: dict):
    """A fresh scheduler of kind `name` on the model's own training schedule."""
    import diffusers

    if name not in SCHEDULERS:
        raise InputError("scheduler", f"one of {', '.join(SCHEDULERS)}", repr(name))
    cls_name, extra = SCHEDULERS[name]
    base = {k: v for k, v in model_config.items() if k in _SCHEDULE_FIELDS}
    return getattr(diffusers, cls_name).from_config({**base, **extra})
