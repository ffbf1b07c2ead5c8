"""The model side: training, its plots and history, predicting, batch segmentation."""
