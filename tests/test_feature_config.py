"""Feature configurations read from JSON (``features --config``, model cards, feature files): every
setting's type and range is checked, with a one-line error naming the setting, its value and what is
allowed, before any feature is computed."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.errors import FeatureError
from nwb_celltype.features.config import FeatureConfig
from nwb_celltype.features.discharge import DischargeConfig
from nwb_celltype.model.shipped import default_bundle_path, demo_bundle_path

C4_BAD = [
    ({"c4_unit_selection": "false"}, r"c4_unit_selection='false' is not allowed; expected true or false"),
    ({"c4_unit_selection": 1}, r"c4_unit_selection=1 .*JSON boolean"),
    ({"min_spikes": -5}, r"min_spikes=-5 is not allowed; expected an integer >= 2 and <= 1,000,000,000"),
    ({"min_spikes": "100"}, r"min_spikes='100' is not allowed; expected an integer"),
    ({"min_spikes": 100.5}, r"min_spikes=100.5 .*integer"),
    ({"min_spikes": True}, r"min_spikes=True .*integer"),
    ({"waveform_samples": 0}, r"waveform_samples=0 is not allowed; expected an integer >= 3"),
    ({"waveform_samples": 91}, r"waveform_samples=91 but .* is 90 samples"),
    ({"acg_window_ms": 1e9}, r"acg_window_ms=1000000000.0 is not allowed; .*<= 20,000"),
    ({"acg_window_ms": float("nan")}, r"acg_window_ms=nan is not allowed"),
    ({"acg_window_ms": 2001.0}, r"acg_window_ms=2001.0 is not a multiple of 2 x acg_bin_ms"),
    ({"acg_bin_ms": 0.05}, r"40000 linear ACG lags; at most 20000"),
    ({"acg_bin_ms": 0}, r"acg_bin_ms=0 is not allowed; expected a number > 0"),
    ({"acg_smooth_ms": 1.0}, r"c4-3d feature configuration: acg_smooth_ms=1.0 gives a boxcar of 1 bin"),
    ({"acg_log_smooth_sigma": 1.5}, r"acg_log_smooth_sigma=1.5 must be a whole number"),
    ({"sampling_rate_hz": -30000.0}, r"sampling_rate_hz=-30000.0 is not allowed; expected a number > 0"),
    ({"acg_rate_bins": 0}, r"acg_rate_bins=0 is not allowed"),
    ({"max_refractory_violation": 5.0}, r"max_refractory_violation=5.0 .*<= 1\."),
    ({"chunk_s": "10"}, r"chunk_s='10' is not allowed; expected a number"),
    ({"version": 1}, r"version=1 is not allowed; expected a string"),
]

DISCHARGE_BAD = [
    ({"min_spikes": -5}, r"acg-isi-wave feature configuration: min_spikes=-5 is not allowed"),
    ({"acg_lags_ms": 10**9}, r"acg_lags_ms=1000000000 is not allowed; expected an integer >= 1 and <= 1,000"),
    ({"isi_bins_ms": 100.0}, r"isi_bins_ms=100.0 .*integer"),
    ({"waveform_rate_hz": "30000"}, r"waveform_rate_hz='30000' is not allowed; expected a number"),
    ({"waveform_pre_ms": 0, "waveform_post_ms": 0}, r"is 0 waveform samples; allowed: 5 to 10000"),
    ({"baseline_ms": -1.0}, r"baseline_ms=-1.0 is not allowed"),
]


@pytest.mark.parametrize(("config", "match"), C4_BAD)
def test_c4_config_refuses_bad_types_and_ranges(config, match):
    with pytest.raises(FeatureError, match=match) as info:
        FeatureConfig.from_dict(config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("config", "match"), DISCHARGE_BAD)
def test_discharge_config_refuses_bad_types_and_ranges(config, match):
    with pytest.raises(FeatureError, match=match) as info:
        DischargeConfig.from_dict(config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [FeatureConfig, DischargeConfig])
def test_every_setting_has_a_range_and_the_defaults_pass(cls):
    assert {f.name for f in fields(cls)} == set(cls.ALLOWED)
    assert cls.from_dict(cls().to_dict()) == cls()
    cls().check_settings()


def test_valid_settings_are_kept():
    cfg = FeatureConfig.from_dict({"c4_unit_selection": True, "min_spikes": 50, "acg_window_ms": 20000.0})
    assert cfg.c4_unit_selection is True and cfg.min_spikes == 50 and cfg.acg_window_ms == 20000.0
    assert DischargeConfig.from_dict({"acg_lags_ms": 50}).acg_lags_ms == 50


@pytest.mark.parametrize("bundle", [default_bundle_path(), demo_bundle_path()])
def test_shipped_model_configs_pass(bundle):
    from nwb_celltype.features.families import get_family

    card = json.loads((bundle / "model_card.json").read_text())
    family = get_family(card.get("feature_family") or "c4-3d")
    assert family.config_from_dict(card["feature_config"]).sha256 == card["feature_config_sha256"]


@pytest.mark.parametrize(
    ("family", "config", "match"),
    [
        ("c4-3d", {"c4_unit_selection": "false"}, "c4_unit_selection='false' is not allowed"),
        ("c4-3d", {"acg_window_ms": 1e9}, "acg_window_ms=1000000000.0 is not allowed"),
        ("acg-isi-wave", {"min_spikes": -5}, "min_spikes=-5 is not allowed"),
    ],
)
def test_cli_features_refuses_bad_config_in_one_line(tmp_path, family, config, match):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config))
    out = tmp_path / "f.npz"
    missing = tmp_path / "no-such-source.nwb"  # the configuration is checked before the source is read
    args = ["features", str(missing), "--out", str(out), "--family", family, "--config", str(cfg)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert match in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("text", ["{bad", "[1]"])
def test_a_config_file_that_is_not_a_json_object_is_one_line(tmp_path, text):
    from click.testing import CliRunner

    from nwb_celltype.cli import main
    from nwb_celltype.simulate import demo_recording_path

    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    r = CliRunner().invoke(
        main, ["features", str(demo_recording_path()), "--out", str(tmp_path / "f.npz"), "--config", str(cfg)]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output and "--config" in r.output, r.output
    assert not (tmp_path / "f.npz").exists()


def test_configs_are_checked_when_made_not_only_when_read():
    """A configuration made in Python (or changed with replace) that from_dict would refuse was
    used, saved into feature files and models, and then those could not be read back."""
    import dataclasses

    from nwb_celltype.errors import FeatureError
    from nwb_celltype.features.config import FeatureConfig
    from nwb_celltype.features.discharge import DischargeConfig

    with pytest.raises(FeatureError, match=r"min_spikes=50.0 is not allowed"):
        DischargeConfig(min_spikes=50.0)
    with pytest.raises(FeatureError, match=r"c4_unit_selection='false' is not allowed"):
        dataclasses.replace(FeatureConfig(), c4_unit_selection="false")
