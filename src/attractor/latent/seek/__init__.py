"""LatentSeek: test-time policy gradient on a loop's thoughts, and its config."""
