"""Small archives the tests build, in the layouts fastcifar reads."""

from __future__ import annotations

import io
import tarfile

import numpy as np
from PIL import Image

from fastcifar.data.fastai_images import CLASS_NAMES


def class_colour(label: int) -> tuple[int, int, int]:
    return (label * 25, 255 - label * 25, 128)


def fastai_archive(name: str = "imagewoof", stem: str = "imagewoof2-160",
                   per_class: dict[str, int] | None = None) -> bytes:
    """A .tgz in the layout fast.ai publishes: <stem>/{train,val}/<wnid>/<id>.JPEG, images
    of varied sizes, each a flat colour that tells its class, and a CSV beside them."""
    per_class = per_class or {"train": 2, "val": 1}
    rng = np.random.default_rng(1)
    members = {f"{stem}/noisy_{name}.csv": b"path,noisy_labels_0\n"}
    for label, wnid in enumerate(sorted(CLASS_NAMES[name])):
        for split, n in per_class.items():
            for i in range(n):
                width, height = (int(v) for v in rng.integers(12, 70, 2))
                pixels = np.full((height, width, 3), class_colour(label), dtype=np.uint8)
                buf = io.BytesIO()
                if i % 2:
                    Image.fromarray(pixels).save(buf, "PNG")
                    members[f"{stem}/{split}/{wnid}/{wnid}_{i}.png"] = buf.getvalue()
                else:
                    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
                    members[f"{stem}/{split}/{wnid}/{wnid}_{i}.JPEG"] = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
