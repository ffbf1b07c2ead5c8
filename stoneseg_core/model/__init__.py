"""A model as files and settings: configs, model folders, ImageNet weights, the working scale, devices."""
