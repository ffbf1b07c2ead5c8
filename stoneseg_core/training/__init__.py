"""Training a U-Net: data, losses, the training loop and its steps, torchrun."""
