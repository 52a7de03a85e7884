"""SwiftBrush (Nguyen & Tran 2023, arXiv 2312.05239): a one-step text-to-image student distilled from a
multi-step teacher by image-free variational score distillation.

- `sampler.py`: the exact one-step sampler (x0 = (z - sqrt(1 - a_T) eps) / sqrt(a_T)) and the pipeline.
- `vsd.py`: the VSD gradient / loss and the LoRA teacher's denoising loss (small pure functions).
- `teacher.py`: the frozen teacher and the LoRA teacher in one U-Net (peft adapter toggled on/off).
- `weights.py`: loading teachers / students with clear errors, architecture checks, student export.
- `train.py`: the accelerate trainer (`python -m models.swiftbrush.train`), shared with the Distill node.
"""
