"""mystyle-pl: personalized generative face priors (MyStyle) with PyTorch Lightning."""

__version__ = "0.1.0"

from .generators import Generator, StyleGAN2Generator, load_generator, save_generator  # noqa: E402

__all__ = ["Generator", "StyleGAN2Generator", "__version__", "load_generator", "save_generator"]
