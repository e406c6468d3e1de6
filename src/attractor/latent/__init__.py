"""Latent reasoning: the continuous-thought loop (SLR), its stabilisers, training and evaluation."""
