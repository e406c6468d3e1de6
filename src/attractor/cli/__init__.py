"""The ``attractor`` command line: thin wrappers that parse options, call the library and print
a rich summary. Heavy imports (torch, transformers) happen inside the commands, so
``attractor --help`` starts fast and a bad option is refused before torch loads."""
from attractor.cli import commands, latent, mechanism, steer, train  # noqa: F401  (importing them registers the commands)
from attractor.cli.app import app, latent_app, main

__all__ = ["app", "latent_app", "main"]
