"""What the window draws from: the display pyramid of big photos. No torch."""
