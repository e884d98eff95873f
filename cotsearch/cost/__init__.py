"""What a network costs: analytic counts from its plan (torch-free), FLOPs measured by
PyTorch, latency on a device, and whether it fits in memory."""
