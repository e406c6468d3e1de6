"""attractor: measure and improve the stability of LLM reasoning in token and latent space."""
__version__ = "0.1.0"
