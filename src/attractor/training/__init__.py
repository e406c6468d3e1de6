"""What every trainer shares: the resumable training state (weights, optimiser moments, the
position in the data) and its exact resume. Used by the latent trainers and train consistency."""
