"""Hybrid latent reasoning (HRPO) and plain GRPO: the hybrid model and its trainer."""
