"""Language-model configs are validated at the door: text sources and causal LMs come together,
and each field that does not apply (or is out of range) is refused with one line naming it."""

import pytest

from jaxmem import config as cfgmod

LM = ['data.source="python_text"', 'model.name="causal_lm"', "scoring.attacks=[]"]


def test_a_language_model_config_resolves():
    cfg = cfgmod.load_config(None, LM + ['scoring.attacks=["loss","zlib","min_k","min_k_plus_plus","reference",'
                                         '"lira_online","lira_offline"]'])
    assert cfg.data.tokenizer == "bytes" and cfg.data.max_len == 128
    assert cfg.scoring.prefix_lengths == [32] and cfg.scoring.suffix_length == 50   # Carlini et al. 2022
    assert cfg.scoring.score_first_token and cfg.scoring.score_eos and cfg.scoring.reference_nll == ""


def test_suffix_length_is_clipped_to_what_the_sequences_allow():
    """Issue 21: the extraction suffix follows Carlini et al. 2022 (50 tokens) where data.max_len
    allows it, else it is clipped (not refused); only a prefix with no room left is refused."""
    from jaxmem.runs.score_lm import suffix_length_used

    assert suffix_length_used(cfgmod.load_config(None, LM)) == 50                      # 32 + 50 <= 128
    assert suffix_length_used(cfgmod.load_config(None, LM + ["data.max_len=40"])) == 8  # 40 - 32
    assert suffix_length_used(cfgmod.load_config(None, LM + ["scoring.suffix_length=16"])) == 16


def test_reference_nll_is_checked_at_the_door(tmp_path):
    import numpy as np

    good, bad, ints = tmp_path / "r.npy", tmp_path / "bad.npy", tmp_path / "i.npy"
    np.save(good, np.ones(5))
    np.save(bad, np.array([1.0, np.nan]))
    np.save(ints, np.ones(5, np.int64))
    cfg = cfgmod.load_config(None, LM + [f'scoring.reference_nll="{good}"'])
    assert cfg.scoring.reference_nll == str(good)
    for sets in ([f'scoring.reference_nll="{bad}"'], [f'scoring.reference_nll="{ints}"'],
                 [f'scoring.reference_nll="{tmp_path / "missing.npy"}"'], ['scoring.attacks=["reference_model"]']):
        with pytest.raises(cfgmod.ConfigError, match="^scoring.reference_nll"):
            cfgmod.load_config(None, LM + sets)
    with pytest.raises(cfgmod.ConfigError, match="^scoring.reference_nll"):
        cfgmod.load_config(None, [f'scoring.reference_nll="{good}"'])          # not a language model
    with pytest.raises(cfgmod.ConfigError, match="^scoring.score_eos"):
        cfgmod.load_config(None, LM + ['scoring.score_eos="no"'])


@pytest.mark.parametrize("sets,field", [
    (['data.source="python_text"'], "model.name"),
    (['model.name="causal_lm"'], "data.source"),
    (['data.source="text:x.txt"', 'model.name="transformer"'], "model.name"),
    (LM + ['scoring.attacks=["rmia_offline"]'], "scoring.attacks"),
    (LM + ['scoring.attacks=["shokri"]'], "scoring.attacks"),
    (['scoring.attacks=["min_k"]'], "scoring.attacks"),
    (['scoring.attacks=["zlib"]'], "scoring.attacks"),
    (LM + ['data.tokenizer="sentencepiece"'], "data.tokenizer"),
    (LM + ["data.max_len=3"], "data.max_len"),
    (LM + ["data.bpe_vocab_size=100"], "data.bpe_vocab_size"),
    (LM + ["data.text_test_fraction=1.0"], "data.text_test_fraction"),
    (LM + ["data.plant_counts=[2,2]", "data.plant_per_count=1"], "data.plant_counts"),
    (LM + ["data.plant_per_count=3"], "data.plant_counts"),
    (LM + ["data.plant_per_count=-1", "data.plant_counts=[2]"], "data.plant_per_count"),
    (LM + ["data.canaries=2"], "data.canary_kind"),
    (LM + ["data.canaries=2", 'data.canary_kind="secret"', "data.canary_counts=[0]"], "data.canary_counts"),
    (LM + ['data.canary_kind="secret"', "data.canary_references=0"], "data.canary_references"),
    (['data.canaries=2', 'data.canary_kind="secret"'], "data.canary_kind"),
    (LM + ["data.label_noise=0.1"], "data.label_noise"),
    (LM + ["data.duplicates=3"], "data.duplicates"),
    (LM + ["data.long_tail_classes=[1]"], "data.long_tail_classes"),
    (LM + ['subsets.design="leave_group_out"'], "subsets.design"),
    (LM + ["train.record_forgetting=true"], "train.record_forgetting"),
    (LM + ['train.records.fields=["loss"]'], "train.records"),
    (LM + ["train.records.vog_epochs=[1,2]"], "train.records"),
    (LM + ['train.augment="flip"'], "train.augment"),
    (LM + ["scoring.influence_top_k=3"], "scoring.influence_top_k"),
    (LM + ['signals.queries=["identity","flip"]'], "signals.queries"),
    (LM + ["scoring.prefix_lengths=[]"], "scoring.prefix_lengths"),
    (LM + ["scoring.suffix_length=0"], "scoring.prefix_lengths"),
    (LM + ["data.max_len=32"], "scoring.prefix_lengths"),     # the prefix leaves no suffix token
    (["scoring.score_eos=false"], "scoring.score_eos"),        # an image run has no tokens to score
    (["scoring.score_first_token=false"], "scoring.score_first_token"),
])
def test_refused_with_the_field_named(sets, field):
    with pytest.raises(cfgmod.ConfigError, match=f"^{field}"):
        cfgmod.load_config(None, sets)


@pytest.mark.parametrize("max_len", [12, 16, 24, 27])
def test_secrets_that_max_len_would_cut_are_refused(max_len):
    """Issue 21, item 5: a secret canary ("my secret number is " + 6 digits, 26 bytes) is 28 byte
    tokens with BOS and EOS. At 24 the model saw 3 of its 6 digits; at 16 the exposure fit crashed.
    Both are refused at the door, the line naming data.max_len and the canary fields."""
    sets = LM + ["data.canaries=2", 'data.canary_kind="secret"', f"data.max_len={max_len}",
                 "scoring.prefix_lengths=[4]", "scoring.suffix_length=4"]
    with pytest.raises(cfgmod.ConfigError, match=r"^data\.max_len: secret canaries \(data\.canaries = 2, "
                                                 r"data\.canary_kind = \"secret\"\) are 28 .* >= 28\)$") as e:
        cfgmod.load_config(None, sets)
    assert "\n" not in str(e.value)
    cfgmod.load_config(None, sets[:-3] + ["data.max_len=28", "scoring.prefix_lengths=[4]", "scoring.suffix_length=4"])
    cfgmod.load_config(None, LM + [f"data.max_len={max_len}", "scoring.prefix_lengths=[4]", "scoring.suffix_length=4"])
