"""The PyTorch side: CoT layers, bottleneck blocks and the network, built from a plan.

Importing this package registers every preset with timm (`timm.create_model("cotnet50")`)."""

from cotsearch.nn import timm_registry  # noqa: F401
