"""Compressed latent reasoning (CoLaR): the model, its trainer, its RL stage and its inspection."""
