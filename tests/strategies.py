"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

from cotsearch.spec import StemSpec

INPUT_SIZE = 32


@st.composite
def valid_specs(draw):
    stem = {"type": draw(st.sampled_from(["classic", "deep", "small"])), "width": draw(st.sampled_from([8, 16]))}
    stride_mode = draw(st.sampled_from(["avgpool", "blurpool"]))
    size = -(-INPUT_SIZE // StemSpec.model_validate(stem).stride)  # the feature map entering the next stage
    stages = []
    for i in range(draw(st.integers(1, 4))):
        card = draw(st.sampled_from([1, 2]))
        planes = draw(st.sampled_from([16, 32]))
        width = planes * card
        stages.append({
            "depth": draw(st.integers(1, 2)),
            "planes": planes,
            # A blur pool cannot stride a 1 px map (the spec refuses it): stride 1 there.
            "stride": draw(st.sampled_from([1, 2] if size > 1 or stride_mode == "avgpool" else [1])),
            "cardinality": card,
            "blocks": draw(st.one_of(st.sampled_from(["cot", "conv", "se_conv"]),
                                     st.lists(st.sampled_from(["cot", "conv", "se_conv"]), min_size=1, max_size=3))),
            "cot": {
                "kernel_size": draw(st.sampled_from([3, 5])),
                "heads": draw(st.sampled_from([None, card, 2 * card, width // 4])),
                "key_groups": draw(st.sampled_from([None, 1, 2, card])),
                "attn_reduction": draw(st.sampled_from([1, 2, 4])),
            },
        })
        size = -(-size // stages[-1]["stride"])
    return {
        "in_chans": draw(st.sampled_from([1, 3])),
        "num_classes": draw(st.sampled_from([0, 1, 7])),
        "input_size": INPUT_SIZE,
        "stem": stem,
        "stages": stages,
        "shortcut": draw(st.sampled_from(["conv", "avgpool"])),
        "stride_mode": stride_mode,
        "se_ratio": draw(st.sampled_from([0.0, 0.25])),
        "act": draw(st.sampled_from(["relu", "silu", "gelu"])),
    }
