"""Getting models out: cotsearch model files, official checkpoints, BN folding, ONNX."""
