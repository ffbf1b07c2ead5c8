"""Loops over folders of photos: segment, grains, evaluate; shards and the Ray engine."""
