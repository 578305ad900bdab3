"""How new instances are painted into the planned windows: candidate windows, copy-paste, the diffusion generator
and the harmoniser (each with its trainer), pretrained diffusers pipelines, the RS-Paint converter, pipeline
fine-tuning and the ``paintseg generate`` orchestration."""
