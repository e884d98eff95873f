from cotsearch.nn.layers.aggregation import local_aggregate, local_aggregate_unfold
from cotsearch.nn.layers.cot import CoTLayer, CoXtLayer
from cotsearch.nn.layers.se_conv import SEConv

__all__ = ["CoTLayer", "CoXtLayer", "SEConv", "local_aggregate", "local_aggregate_unfold"]
