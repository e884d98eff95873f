"""Training: the recipe (torch-free, validated like a spec), the loop, checkpoints."""
