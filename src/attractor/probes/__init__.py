"""Early-token probes: predict a rollout's correctness and its question's stability from the
hidden states of its first N completion tokens (``attractor probe``)."""
