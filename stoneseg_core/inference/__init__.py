"""Running a model on a photo: the Segmenter, ONNX Runtime, tiles, photos of any size."""
