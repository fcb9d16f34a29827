#!/usr/bin/env python3
"""Fits each detector's score calibration (Platt scaling) and prints the manifest's [calibration] table.

    scripts/fit-score-calibration.py [--pancap target/release/pancap] [--models-dir DIR] DETECTOR...

For every detector alone (no discovery, no stuff, raw scores: `pancap caption --format coco --raw-scores`) it
captions the fit images, labels each detection right or wrong as COCO matching does (greedy by score; right when
it overlaps an unclaimed, non-crowd reference of its class at IoU >= 0.5), and fits p = sigmoid(a*logit(s) + b)
by Newton's method (two parameters per detector: the fit is small on purpose).

The fit images are the annotated images that are NOT the evaluation images (coco-val2017-dev stays out):
coco-train2017-dev (6 photos, 136 objects) and the coco-panoptic-dev photo (its things). COCO-trained detectors
saw the train2017 photos in training, which makes their scores there a little optimistic; the table this prints
also shows precision by score band on coco-val2017-dev beside the fit set, for a check, never for the fit.
Needs numpy (`pip install numpy`) and the shared data folder beside the checkout.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
FIT_SETS = [
    ("coco-train2017-dev/images", "coco-train2017-dev/instances.json"),
    ("coco-panoptic-dev/images", "coco-panoptic-dev/panoptic.json"),
]
CHECK_SET = ("coco-val2017-dev/images", "coco-val2017-dev/instances.json")
EPS = 1e-4  # as ScoreCalibration::EPS


def references(path):
    """image id -> [(category, xywh, crowd)]: COCO instances, or the thing segments of a COCO panoptic file."""
    d = json.load(open(path))
    out = {i["id"]: [] for i in d["images"]}
    if d["annotations"] and "segments_info" in d["annotations"][0]:
        thing = {c["id"]: c.get("isthing", 0) == 1 for c in d["categories"]}
        for a in d["annotations"]:
            for s in a["segments_info"]:
                if thing.get(s["category_id"]):
                    out[a["image_id"]].append((s["category_id"], s["bbox"], s.get("iscrowd", 0)))
    else:
        for a in d["annotations"]:
            out[a["image_id"]].append((a["category_id"], a["bbox"], a.get("iscrowd", 0)))
    return out


def iou(a, b):
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def label(dets, refs):
    """[(score, right)] for every detection."""
    out = []
    for image, gts in refs.items():
        used = [False] * len(gts)
        mine = sorted((d for d in dets if d["image_id"] == image), key=lambda d: -d["score"])
        for d in mine:
            best, hit = 0.5, -1
            for j, (cat, box, crowd) in enumerate(gts):
                if cat != d["category_id"] or used[j] or crowd:
                    continue
                v = iou(d["bbox"], box)
                if v >= best:
                    best, hit = v, j
            if hit >= 0:
                used[hit] = True
            out.append((d["score"], 1 if hit >= 0 else 0))
    return out


def logit(s):
    s = min(max(s, EPS), 1 - EPS)
    return math.log(s / (1 - s))


def fit(data):
    x = np.array([logit(s) for s, _ in data])
    y = np.array([t for _, t in data], dtype=float)
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * x + b)))
        w = p * (1 - p) + 1e-9
        g = np.array([((p - y) * x).sum(), (p - y).sum()])
        h = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def detections(pancap, models_dir, detector, images, refs_path):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [pancap, "caption", images, "--format", "coco", "--coco-instances", refs_path, "--detectors", detector,
               "--no-discovery", "--no-stuff", "--no-text", "--no-person-masks", "--raw-scores", "-q", "-o", f.name]
        if models_dir:
            cmd += ["--models-dir", models_dir]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.load(open(f.name))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pancap", default="target/release/pancap")
    ap.add_argument("--models-dir", default=os.environ.get("PANCAP_MODELS_DIR"))
    ap.add_argument("detectors", nargs="+")
    args = ap.parse_args()
    for det in args.detectors:
        data = []
        for images, refs in FIT_SETS:
            refs = os.path.join(DATA, refs)
            data += label(detections(args.pancap, args.models_dir, det, os.path.join(DATA, images), refs), references(refs))
        a, b = fit(data)
        check_refs = os.path.join(DATA, CHECK_SET[1])
        check = label(detections(args.pancap, args.models_dir, det, os.path.join(DATA, CHECK_SET[0]), check_refs),
                      references(check_refs))
        cal = lambda s: 1 / (1 + math.exp(-(a * logit(s) + b)))
        print(f"# {det}: precision by raw-score band, fit set | coco-val2017-dev (check only) | calibrated at the middle")
        for lo, hi in [(0.0, 0.1), (0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01)]:
            f = [t for s, t in data if lo <= s < hi]
            c = [t for s, t in check if lo <= s < hi]
            fp = f"{np.mean(f):.2f} (n={len(f)})" if f else "-"
            cp = f"{np.mean(c):.2f} (n={len(c)})" if c else "-"
            print(f"#   [{lo:.1f}, {min(hi, 1.0):.1f}): {fp:>14} | {cp:>14} | {cal((lo + min(hi, 1.0)) / 2):.2f}")
        print(f"[calibration]  # {det}")
        print(f"a = {a:.4f}")
        print(f"b = {b:.4f}")
        print('fitted_on = "coco-train2017-dev (6 photos) + coco-panoptic-dev (1 photo) things; '
              'scripts/fit-score-calibration.py"')
        print(f"detections = {len(data)}")
        print(f"true_positives = {sum(t for _, t in data)}")
        print()


if __name__ == "__main__":
    sys.exit(main())
