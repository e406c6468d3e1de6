"""The continuous-thought loop (SLR, Coconut, soft thinking): the loop, its stabilisers and config, the Coconut curriculum, its trainer and causal interventions on thoughts."""
