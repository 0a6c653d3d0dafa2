"""geodiff: generative diffusion on 3D geometry."""

__version__ = "0.1.0"
