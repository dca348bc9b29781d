"""A label file whose image is gone is reported by ``repyolo data check`` (and by training's data
check), never used."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from repyolo.cli import main
from repyolo.data import generate_synthetic, load_data_config


def test_label_without_image_is_reported(tmp_path, capsys):
    data = generate_synthetic(tmp_path / "syn", n_train=4, n_val=2, img_size=32, seed=0)
    labels = tmp_path / "syn" / "labels" / "train"
    orphan = labels / "deleted_photo.txt"
    shutil.copy(next(labels.glob("*.txt")), orphan)
    (labels / "sub").mkdir()
    (labels / "sub" / "renamed.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert main(["data", "check", str(data), "--split", "train", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "2 label files without an image" in out
    assert f"{orphan}: label file without an image (ignored)" in out
    report = json.loads((tmp_path / "r.json").read_text())["train"]
    assert report["n_orphan_labels"] == 2 and report["n_usable"] == 4
    ds = load_data_config(data).dataset("train")
    assert len(ds) == 4 and ds.report.n_orphan_labels == 2


def test_labels_beside_images_are_not_second_guessed(tmp_path, capsys):
    """Without an images/ -> labels/ pair, other .txt files in the folder may be anything."""
    data = generate_synthetic(tmp_path / "syn", n_train=3, n_val=1, img_size=32, seed=0)
    flat = tmp_path / "flat"
    flat.mkdir()
    for img in (Path(data).parent / "images" / "train").glob("*.jpg"):
        shutil.copy(img, flat / img.name)
        shutil.copy(Path(data).parent / "labels" / "train" / f"{img.stem}.txt", flat / f"{img.stem}.txt")
    (flat / "README.txt").write_text("notes\n")
    (flat / "classes.txt").write_text("a\nb\nc\nd\ne\n")
    assert main(["data", "check", str(flat)]) == 0
    assert "without an image" not in capsys.readouterr().out
