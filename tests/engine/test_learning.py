"""The full recipe learns real objects: overfit a handful of coco128 images."""
from __future__ import annotations

import pytest
import yaml

from repyolo.engine.trainer import TrainArgs, Trainer


@pytest.mark.slow(seconds=50)
@pytest.mark.real_data
def test_overfit_real_images(coco128, tmp_path):
    """yolov6n from scratch on 8 real COCO images at 288 px reaches mAP@0.5 >= 0.45 on them in 50
    epochs (one batch each) with AdamW, in the default precision (bfloat16 autocast where the CPU has
    it natively, so the real-data run covers that path end to end; float32 elsewhere).

    Measured (lr0 0.006, 50 epochs): 0.609 (bfloat16, seed 0), 0.536 (bfloat16, seed 1), 0.530
    (float32, seed 0); after 10 epochs, i.e. barely trained, 0.11-0.20. SGD, the default optimizer,
    needs ~100 epochs here and then sits at 0.47-0.51, too close to any threshold for a test."""
    images = sorted((coco128 / "images" / "train").glob("*.jpg"))
    labelled = [p for p in images if (coco128 / "labels" / "train" / f"{p.stem}.txt").is_file()][:8]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in labelled))
    names = (coco128 / "classes.txt").read_text().split("\n")[:80]
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"train": str(tmp_path / "list.txt"), "val": str(tmp_path / "list.txt"),
                                    "nc": 80, "names": names}))
    hyp = dict(mosaic=0.0, mixup=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, translate=0.0, scale=0.0,
               close_mosaic=0, optimizer="AdamW", lr0=0.006)
    # one batch per epoch: decoded once (cache), no loader processes to start 50 times
    args = TrainArgs(model="yolov6n", data=str(data), epochs=50, img=288, batch=8, project=str(tmp_path),
                     name="overfit", workers=0, cache="ram", seed=0, hyp=hyp, eval_interval=50)
    result = Trainer(args).train()
    assert result["map50"] >= 0.45, result
