"""Steering vectors: build them from a run (Fractional Reasoning's contrastive-prompt direction,
or a stability direction), save them as safetensors, and inject them while sampling."""
