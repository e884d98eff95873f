"""Architectures without torch: the spec schema, YAML, presets, and the plan of a network
with the cost formula of each of its layers."""
