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
SCHEDULE_FIELDS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
    "steps_offset",
    "timestep_spacing",
)


def schedule_config(model_config: dict) -> dict:
    """The training-schedule part of a model's scheduler config (set fields only)."""
    return {k: v for k, v in model_config.items() if k in SCHEDULE_FIELDS and v is not None}


def scheduler_of_class(cls_name: str, model_config: dict, **overrides):
    """A diffusers scheduler of class `cls_name` on the model's own training schedule."""
    import diffusers

    return getattr(diffusers, cls_name).from_config({**schedule_config(model_config), **overrides})


def make_scheduler(name: str, model_config: dict):
    """A fresh scheduler of kind `name` on the model's own training schedule."""
    if name not in SCHEDULERS:
        raise InputError("scheduler", f"one of {', '.join(SCHEDULERS)}", repr(name))
    cls_name, extra = SCHEDULERS[name]
    return scheduler_of_class(cls_name, model_config, **extra)
