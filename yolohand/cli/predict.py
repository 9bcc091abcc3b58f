"""`yolohand predict`: images -> submission CSV (29 rows per image), optionally probability maps."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand import defaults as D  # zero-dependency: --help stays light
from yolohand.cli.options import as_param, check_device, parse_scales


def predict(
    rle: Path = typer.Option(..., "--rle", help="Submission CSV to write (image_name,class,rle; 29 rows per image)."),
    weights: list[Path] = typer.Option(
        None, "--weights", "-w", show_default=False,
        help="Checkpoint(s) of any family (YOLO .pt, smp:...); repeat to average several (e.g. all folds) "
        "[default: newest best.pt under the runs folder, else the shipped weights/yolohand-synth-n.pt].",
    ),
    source: Path = typer.Option(
        None, "--source", show_default=False,
        help="A folder (searched recursively), an image, or a .txt list of images [default: <root>/test/DCM].",
    ),
    runs: Path = typer.Option(None, "--runs", show_default=False, help="Where to look for best.pt [default: configured runs]."),
    imgsz: int = typer.Option(None, "--imgsz", min=32, show_default=False, help="Network input size [default: the checkpoint's training size]."),
    conf: float = typer.Option(D.CONF, "--conf", min=0.0, max=1.0, help="Detection confidence threshold (low: top-1 per class removes duplicates)."),
    iou: float = typer.Option(D.IOU, "--iou", min=0.0, max=1.0, help="NMS IoU threshold (per class)."),
    device: str = typer.Option(None, "--device", parser=as_param(check_device), show_default=False, help="cpu, 0, cuda:0 ... [default: ultralytics' choice]."),
    batch: int = typer.Option(1, "--batch", min=1, help="Images per forward pass (x2 with --tta); larger uses a GPU better."),
    half: bool = typer.Option(False, "--half", help="fp16 inference on a CUDA GPU (an error on CPU)."),
    tta: bool = typer.Option(False, "--tta/--no-tta", help="Also predict the horizontally flipped image and average."),
    tta_scales: str = typer.Option(
        "1", "--tta-scales", parser=as_param(parse_scales), metavar="S[,S...]",
        help="Multi-scale TTA: predict at the input size times each scale (YOLO imgsz rounded to 32, smp plane) and "
        "average, with the flip when --tta; 1 alone is the plain path.",
    ),
    window: int = typer.Option(
        None, "--window", min=0, show_default=False,
        help="smp: sliding windows of this side over the network's plane, blended with a Gaussian; 0: the whole plane "
        "[default: the checkpoint's training window].",
    ),
    stride: int = typer.Option(None, "--stride", min=1, show_default=False,
                               help="smp: sliding-window stride [default: the checkpoint's, else window / 2]."),
    threshold: float = typer.Option(D.THRESHOLD, "--threshold", min=0.0, max=1.0, help="Probability threshold for the masks (p >= threshold)."),
    thresholds: Path = typer.Option(
        None, "--thresholds", show_default=False,
        help="Per-class thresholds JSON (from `yolohand thresholds`) instead of --threshold.",
    ),
    merge: str = typer.Option(
        D.MERGE, "--merge",
        help="assign: one detection per class and one class per detection, jointly, checked against the hand's order; "
        "top1: the most confident detection per class; union: pixel-wise max over a class's detections.",
    ),
    conf_weight: bool = typer.Option(
        D.CONF_WEIGHT, "--conf-weight/--no-conf-weight", help="Multiply mask probabilities by the detection confidence."
    ),
    mask_threshold: float = typer.Option(
        D.MASK_THRESHOLD, "--mask-threshold",
        help="Raw mask probability mapped to 0.5 (logit shift): corrects ultralytics' fat training masks; 0.5 = plain sigmoid.",
    ),
    missing: str = typer.Option(
        D.MISSING, "--missing",
        help="When averaging models/flips: a run that missed a class is left out (skip) or counts as 0 (zero).",
    ),
    agree_iou: float = typer.Option(
        D.AGREE_IOU, "--agree-iou", min=0.0, max=1.0,
        help="When averaging: a run whose box IoU with the most confident run's is below this picked another bone, "
        "and counts as a miss; 0 averages everything.",
    ),
    save_probs: Path = typer.Option(
        None, "--save-probs", show_default=False,
        help="Also write uint8 (29,H,W) probability maps here, one .npz per image (probmaps format).",
    ),
    refiner: list[Path] = typer.Option(
        None, "--refiner", show_default=False,
        help="Refiner checkpoint(s) (train --model refine:ARCH:ENCODER): re-segment each bone at full resolution; repeat to average.",
    ),
    gt: Path = typer.Option(None, "--gt", show_default=False, help="Dataset root with annotations: score the CSV at the end."),
    mask_mode: str = typer.Option(D.MASK_MODE, "--mask-mode", hidden=True, help="soft | polygon (the common way, for comparisons)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Predict images into a submission CSV: soft full-resolution masks, one instance per bone."""
    from yolohand.models.predict import Settings, predict_to_submission

    per_class = None
    if thresholds is not None:
        from yolohand.errors import YolohandError
        from yolohand.results.thresholds import load_thresholds

        if threshold != D.THRESHOLD:
            raise YolohandError("--threshold and --thresholds: give one (a file of per-class thresholds, or one number)")
        per_class = load_thresholds(thresholds)
    settings = Settings(merge=merge, conf_weight=conf_weight, tta=tta, mask_mode=mask_mode, threshold=threshold,
                        missing=missing, mask_threshold=mask_threshold, agree_iou=agree_iou, tta_scales=tta_scales)
    summary = predict_to_submission(
        rle, source=source, weights=weights or None, runs=runs, settings=settings, save_probs=save_probs, gt=gt,
        force=force, refiners=refiner or (), batch=batch, imgsz=imgsz, conf=conf, iou=iou, device=device,
        half=half or None,  # None: not forwarded (every loader's own default, fp32)
        window=window, stride=stride,
        thresholds=per_class,
    )
    if summary.eval_table:
        typer.echo(summary.eval_table)
    for line in summary.lines():
        typer.echo(line)
