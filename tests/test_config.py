import pytest

from aelab.config import config_from_dict, load_config
from aelab.errors import ConfigError


def test_defaults_and_resolved_output_activation():
    cfg = config_from_dict({"model": {"type": "fcn"}})
    assert cfg.model.output_activation == "tanh"
    cfg = config_from_dict({"data": {"range": [0, 1]}, "model": {"type": "conv"}})
    assert cfg.model.output_activation == "sigmoid"


def test_overrides_parse_values_as_yaml():
    cfg = config_from_dict({}, ["train.epochs=5", "train.lr=3e-4", "model.hidden=[32, 8]", "data.select_labels=[3]"])
    assert cfg.train.epochs == 5 and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.hidden == [32, 8] and cfg.data.select_labels == [3]


def test_noise_shorthand():
    assert config_from_dict({"train": {"input_noise": 0.2}}).train.input_noise.std == 0.2
    mask = config_from_dict({"train": {"input_noise": {"type": "mask", "fraction": 0.3}}}).train.input_noise
    assert mask.type == "mask" and mask.fraction == 0.3


@pytest.mark.parametrize(
    ("raw", "overrides", "needle"),
    [
        ({"train": {"lrr": 1}}, [], "unknown config key 'train.lrr' (did you mean 'lr'?)"),
        ({"trian": {}}, [], "unknown config key 'trian' (did you mean 'train'?)"),
        ({"model": {"type": "fcn", "hiden": [3]}}, [], "unknown config key 'model.hiden' (did you mean 'hidden'?)"),
        ({"model": {"type": "vea"}}, [], "unknown model.type 'vea' (did you mean 'vae'?)"),
        ({}, ["train.lr=-1"], "config key 'train.lr' = -1"),
        ({}, ["train.batch_size=0"], "config key 'train.batch_size' = 0"),
        ({"data": {"range": [0, 1]}, "model": {"type": "fcn", "output_activation": "tanh"}}, [],
         "does not match data.range"),
        ({"data": {"range": [0, 2]}}, [], "data.range"),
        ({}, ["train.epochs"], "expected key=value"),
        ({"model": {"type": "vae", "backbone": "rnn"}}, [], "model.backbone"),
    ],
)
def test_bad_values_name_the_key(raw, overrides, needle):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, overrides)
    assert needle in str(err.value)


def test_yaml_round_trip(tmp_path):
    cfg = config_from_dict({"name": "x", "model": {"type": "vae", "backbone": "conv", "latent_dim": 8}})
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    again = load_config(tmp_path / "c.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert again.model.backbone == "conv" and again.model.latent_dim == 8


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(tmp_path / "bad.yaml")


def test_a_bare_preset_name_loads_the_shipped_config(tmp_path, monkeypatch):
    from aelab.config import preset

    monkeypatch.chdir(tmp_path)  # no deep-fcn file here: the name means the shipped preset
    by_name = load_config("deep-fcn")
    assert by_name.to_dict() == load_config(preset("deep-fcn")).to_dict()
    assert load_config("conv-vae.yaml").model.type == "vae"
    (tmp_path / "deep-fcn.yaml").write_text("name: mine\nmodel: {type: fcn, latent_dim: 3}\n")
    assert load_config("deep-fcn.yaml").name == "mine"  # a file of that name wins over the preset
    with pytest.raises(ConfigError, match="config file not found: no-such-preset"):
        load_config("no-such-preset")
