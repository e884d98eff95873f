"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st


@st.composite
def valid_specs(draw):
    stages = []
    for i in range(draw(st.integers(1, 4))):
        card = draw(st.sampled_from([1, 2]))
        planes = draw(st.sampled_from([16, 32]))
        width = planes * card
        stages.append({
            "depth": draw(st.integers(1, 2)),
            "planes": planes,
            "stride": draw(st.sampled_from([1, 2])),
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
    return {
        "in_chans": draw(st.sampled_from([1, 3])),
        "num_classes": draw(st.sampled_from([0, 1, 7])),
        "input_size": 32,
        "stem": {"type": draw(st.sampled_from(["classic", "deep", "small"])), "width": draw(st.sampled_from([8, 16]))},
        "stages": stages,
        "shortcut": draw(st.sampled_from(["conv", "avgpool"])),
        "stride_mode": draw(st.sampled_from(["avgpool", "blurpool"])),
        "se_ratio": draw(st.sampled_from([0.0, 0.25])),
        "act": draw(st.sampled_from(["relu", "silu", "gelu"])),
    }
