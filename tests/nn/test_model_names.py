"""Official YOLOv6 config names work wherever a model name does (one resolver: load_model_config)."""
from __future__ import annotations

import pytest
import torch
import yaml

from repyolo.errors import ConfigError
from repyolo.nn.model import available_models, build_model, bundled_name, load_model_config

OFFICIAL = {
    "yolov6n_base": "yolov6n-base", "yolov6l_base.py": "yolov6l-base", "configs/base/yolov6m_base.py": "yolov6m-base",
    "yolov6_lite_s": "yolov6lite-s", "yolov6lite_s": "yolov6lite-s", "yolov6_lite_l.py": "yolov6lite-l",
    "configs/yolov6_lite/yolov6_lite_m.py": "yolov6lite-m",
    "yolov6s_mbla": "yolov6s-mbla", "mbla/yolov6x_mbla.py": "yolov6x-mbla",
    "yolov6n_qa": "yolov6n-qa", "qarepvgg/yolov6m_qa.py": "yolov6m-qa",
    "yolov6l6": "yolov6l6", "yolov6l6.py": "yolov6l6", "configs/yolov6n.py": "yolov6n", "YOLOv6S.py": "yolov6s",
    "repopt/yolov6s_opt.py": "yolov6s-repopt", "yolov6t": "yolov6t-v2",
}


@pytest.mark.parametrize("official, bundled", sorted(OFFICIAL.items()))
def test_official_config_names_resolve(official, bundled):
    assert bundled_name(official) == bundled
    assert load_model_config(official) == load_model_config(bundled)


def test_every_bundled_name_resolves_to_itself():
    assert all(bundled_name(name) == name for name in available_models())


def test_official_name_builds_the_bundled_model():
    with torch.device("meta"):
        model = build_model("yolov6_lite_s.py", num_classes=3)
    assert model.cfg["name"] == "yolov6lite-s" and model.detect.strides == [8, 16, 32, 64]


def test_existing_official_py_file_is_never_read(tmp_path):
    """A real ``.py`` file is matched by its name only: its content is never executed nor parsed."""
    path = tmp_path / "yolov6n_qa.py"
    path.write_text("raise SystemExit('executed!')\n")
    assert load_model_config(path)["name"] == "yolov6n-qa"
    unknown = tmp_path / "my_model.py"
    unknown.write_text("model = dict()\n")
    with pytest.raises(ConfigError, match="unknown model"):
        load_model_config(unknown)


def test_user_yaml_wins_over_bundled_names(tmp_path):
    cfg = load_model_config("yolov6n")
    cfg["width_multiple"] = 0.125
    path = tmp_path / "yolov6s.yaml"  # a user file that happens to carry a bundled name
    path.write_text(yaml.safe_dump(cfg))
    assert load_model_config(path)["width_multiple"] == 0.125


@pytest.mark.parametrize("name", ["yolov6xxl", "yolov6s_finetune.py", "", "resnet50", "cfgs/yolov6s.yaml"])
def test_unknown_names_list_what_exists(name):
    with pytest.raises(ConfigError, match="unknown model|not found") as err:
        load_model_config(name)
    message = str(err.value)
    assert "\n" not in message and "yolov6lite-s" in message and "yolov6n-base" in message
