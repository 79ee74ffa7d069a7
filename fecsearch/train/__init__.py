"""Training the paper's models."""
