"""Per-GT history during training: a fixed probe set of training images, run every N iterations
through the current model's own loss path, one record per GT (issue "What no tool shows", part 1).

At the start of a run a seeded choice of ``images`` training images that hold at least one GT is
saved as ``probe.json`` in the run folder (a resumed run keeps it). Every ``interval`` iterations
(before the step of that global step: the weights after that many iterations; and once at the
end of the run) :class:`TrainingProbe` puts each probe image through the config's test pipeline
and the model, in eval mode under ``no_grad`` (batch-norm statistics and the training state are
not touched, the RNG is forked), and computes its targets and loss with
:meth:`DenseDetector.loss_from_outputs` on a batch of that one image: the head's own assigner
(fed the model's predictions when it weighs them, RTMDet's dynamic soft label; TOOD's initial ATSS
epochs as the trainer set them), its own loss and normalisation. The per-GT numbers come from that
:class:`~detengine.trace.DebugTrace` exactly as the debug views derive them
(:func:`~detengine.trace.loss_breakdown`, the assignment's positives), so they equal what the
Assignment and Loss views show for the same weights and image. ``probe.jsonl`` gets one line per
probe GT: ``{"iter", "epoch", "image", "gt", "pos", "cls", "box"}`` (``cls`` / ``box``: the mean
per-prior classification / regression loss over the GT's positives, as the Loss view lists them,
normalised by that image's own avg factor; None without positives).

:func:`read_probe` reads a run's history for the window (Qt-free, torch-free); ``starved`` lists
the GTs with zero positives in at least a given share of the probes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PROBE_FILE", "PROBE_SET_FILE", "AUTO_MAX_IMAGES", "DEFAULT_PROBE", "probe_interval", "TrainingProbe",
           "make_probe", "ProbeGT", "ProbeHistory", "read_probe", "has_probe", "probe_gt_in_project"]

PROBE_FILE = "probe.jsonl"
PROBE_SET_FILE = "probe.json"
#: ``interval="auto"`` probes training splits of up to this many images (off above)
AUTO_MAX_IMAGES = 10_000
AUTO_EVERY = 50
DEFAULT_PROBE = {"interval": "auto", "images": 16}
_CACHE_BYTES = 256 * 2 ** 20        # network inputs kept between probes up to this size (else re-read)


def probe_interval(interval, num_images: int, iters_per_epoch: int, images: int = 16, batch_size: int = 8) -> int:
    """Iterations between probes, 0 for off. ``"auto"`` (the default): on for training splits of
    at most :data:`AUTO_MAX_IMAGES` images, every ``min(50, iterations per epoch)`` iterations,
    times ``ceil(images / (2 * batch_size))`` (a probe of ``images`` costs about
    ``images / batch_size / 3`` training steps, bench/RESULTS.md: so about 2 % of the training time
    at any batch size; 16 images and a batch of 8 or more: at least once per epoch); off for bigger
    splits. A number: that interval (0: off)."""
    if interval in (None, "auto"):
        if num_images > AUTO_MAX_IMAGES:
            return 0
        return min(AUTO_EVERY, max(1, int(iters_per_epoch))) * max(1, math.ceil(images / (2 * max(1, batch_size))))
    return max(0, int(interval))


def check_probe_settings(probe) -> dict:
    """The config's ``probe=dict(interval=..., images=...)`` with defaults, checked."""
    probe = dict(DEFAULT_PROBE, **(probe or {}))
    unknown = sorted(set(probe) - set(DEFAULT_PROBE))
    if unknown:
        raise ValueError(f"probe: unknown keys {unknown}; known: interval ('auto' or iterations, 0 = off), images")
    interval = probe["interval"]
    if interval != "auto" and (isinstance(interval, bool) or not isinstance(interval, int) or interval < 0):
        raise ValueError(f"probe.interval must be 'auto' or a number of iterations >= 0 (0: off), got {interval!r}")
    if isinstance(probe["images"], bool) or not isinstance(probe["images"], int) or probe["images"] < 1:
        raise ValueError(f"probe.images must be a number of images >= 1, got {probe['images']!r}")
    return probe


def _short(value: float) -> float:
    return float(f"{value:.7g}")


@dataclass
class _ProbeImage:
    """One probe image as saved in ``probe.json`` (original pixels)."""

    index: int
    image_id: int
    file_name: str
    path: str | None
    height: int
    width: int
    boxes: list
    labels: list
    ignore: list
    input_boxes: list | None = None     # the GT boxes in network-input pixels (the test pipeline's)

    def to_json(self) -> dict:
        return dict(vars(self))


class TrainingProbe:
    """The probe of one run (rank 0 only: it never takes part in a collective).

    ``dataset``: the raw training split (``load_sample(i)``); ``test_pipeline``: the config's
    (what the debug views run); ``size_divisor``: the data preprocessor's pad divisor."""

    def __init__(self, run_dir, dataset, test_pipeline, *, interval: int, images: int = 16, seed: int = 0,
                 size_divisor: int | None = None, batch_size: int = 8):
        self.run_dir = Path(run_dir)
        self.dataset, self.test_pipeline = dataset, test_pipeline
        self.interval, self.size_divisor = int(interval), size_divisor
        self.batch_size = max(1, int(batch_size))
        self.path, self.set_path = self.run_dir / PROBE_FILE, self.run_dir / PROBE_SET_FILE
        self.images = self._load_set(images, seed) or self._choose(images, seed)
        self.num_gts = sum(len(im.boxes) for im in self.images)
        self._inputs = None           # cached network inputs (when small enough)
        self._done: set[int] | None = None     # iterations already in probe.jsonl (read at the first probe)

    # ------------------------------------------------------------------ the probe set
    def _choose(self, count: int, seed: int) -> list[_ProbeImage]:
        """``count`` images with at least one GT, in a seeded order over the split (at most
        ``8 * count`` tried); saved to ``probe.json``."""
        from .data.errors import ImageReadError
        from .image_trace import boxes_to_input, prepare_image
        order = np.random.default_rng([int(seed), 0x9B0BE]).permutation(len(self.dataset))
        chosen = []
        for index in order[:8 * count]:
            try:
                sample = self.dataset.load_sample(int(index))
            except ImageReadError:
                continue
            if len(sample.boxes):
                im = self._describe(int(index), sample)
                meta = prepare_image(self.test_pipeline, sample.image, self.size_divisor).meta
                im.input_boxes = boxes_to_input(im.boxes, meta).numpy().round(2).tolist()
                chosen.append(im)
            if len(chosen) == count:
                break
        chosen.sort(key=lambda im: im.index)
        from .io import atomic_write_text
        self.run_dir.mkdir(parents=True, exist_ok=True)
        head = json.dumps({"version": 1, "seed": int(seed), "interval": self.interval, "asked": int(count),
                           "classes": list(getattr(self.dataset, "class_names", []))})
        images = ",\n".join(json.dumps(im.to_json()) for im in chosen)       # one line per image
        atomic_write_text(self.set_path, f'{head[:-1]}, "images": [\n{images}\n]}}\n')
        if self.path.exists():                     # a history of another probe set would not fit it
            self.path.unlink()
        return chosen

    def _describe(self, index: int, sample) -> _ProbeImage:
        folder = getattr(self.dataset, "img_dir", None)
        if hasattr(self.dataset, "image_path"):                       # VOC
            path = str(Path(self.dataset.image_path(index)).resolve())
        else:                                                          # COCO: the file beside its folder
            path = str((Path(folder) / sample.file_name).resolve()) if folder is not None and sample.file_name \
                else None
        h, w = sample.image.shape[:2]
        return _ProbeImage(index, int(sample.image_id), str(sample.file_name), path, int(h), int(w),
                           np.asarray(sample.boxes, np.float64).reshape(-1, 4).round(3).tolist(),
                           np.asarray(sample.labels, np.int64).reshape(-1).tolist(),
                           np.asarray(sample.ignore_boxes, np.float64).reshape(-1, 4).round(3).tolist())

    def _load_set(self, count: int, seed: int) -> list[_ProbeImage] | None:
        """The saved probe set (a resumed run), when it still names this split's images."""
        if not self.set_path.exists():
            return None
        try:
            saved = json.loads(self.set_path.read_text(encoding="utf-8"))
            images = [_ProbeImage(**im) for im in saved["images"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        infos = getattr(self.dataset, "image_infos", None)
        for im in images:
            if im.index >= len(self.dataset) or (infos is not None and infos[im.index]["file_name"] != im.file_name):
                return None
        return images

    # ------------------------------------------------------------------ running
    def due(self, global_step: int) -> bool:
        return self.interval > 0 and global_step % self.interval == 0

    def _first(self, global_step: int) -> None:
        """Before the first probe of this process: records of iterations after ``global_step``
        (a future a resume from an earlier checkpoint discards), incomplete probes and a cut
        last line are dropped; the iterations left are not probed again."""
        self._done = set()
        if not self.path.exists():
            return
        records, dropped = [], False
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                    it = int(r["iter"])
                except (ValueError, KeyError, TypeError):
                    dropped = True
                    continue
                if it > global_step:
                    dropped = True
                else:
                    records.append((it, line if line.endswith("\n") else line + "\n"))
        counts: dict[int, int] = {}
        for it, _ in records:
            counts[it] = counts.get(it, 0) + 1
        complete = {it for it, n in counts.items() if n == self.num_gts}
        if len(complete) != len(counts):
            dropped = True
        if dropped:
            from .io import atomic_write_text
            atomic_write_text(self.path, "".join(line for it, line in records if it in complete))
        self._done = complete

    def maybe_run(self, model, global_step: int, epoch: int, *, final: bool = False) -> dict | None:
        """Probe if ``global_step`` is due (or ``final``) and not in the history yet: append the
        records; returns ``{"global_step", "records", "seconds"}`` or None."""
        if self._done is None:
            self._first(global_step)
        if self.interval <= 0 or global_step in self._done or not (final or self.due(global_step)):
            return None
        import time
        t0 = time.perf_counter()
        records = self.measure(model, global_step, epoch)
        with open(self.path, "a", encoding="utf-8") as f:       # one write: a probe is whole or cut
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
        self._done.add(global_step)
        return {"global_step": global_step, "records": len(records), "seconds": time.perf_counter() - t0}

    def _image_inputs(self):
        """(ImageInput, GT boxes, labels, ignored boxes in input pixels) per probe image: the
        test pipeline and the box mapping of :class:`~detengine.image_trace.ImageTracer`."""
        if self._inputs is not None:
            return self._inputs
        import torch

        from .image_trace import boxes_to_input, prepare_image
        out = []
        for im in self.images:
            pixels = self.dataset.load_sample(im.index).image
            image_input = prepare_image(self.test_pipeline, pixels, self.size_divisor)
            out.append((image_input, boxes_to_input(im.boxes, image_input.meta),
                        torch.as_tensor(im.labels, dtype=torch.long).reshape(-1),
                        boxes_to_input(im.ignore, image_input.meta)))
        if sum(x[0].batch.numel() * 4 for x in out) <= _CACHE_BYTES:
            self._inputs = out
        return out

    def traces(self, model) -> list:
        """The :class:`~detengine.trace.DebugTrace` of each probe image under ``model`` (the
        detector's own loss path on a batch of that one image), in eval mode without gradients;
        the model's mode, its ``want_assign_stats`` flag and the RNG are restored."""
        import torch
        device = next(model.parameters()).device
        inputs = self._image_inputs()
        was_training, wanted = model.training, getattr(model, "want_assign_stats", False)
        stats = getattr(model, "assign_stats", None)
        traces = [None] * len(inputs)
        devices = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        groups: dict[tuple, list[int]] = {}
        for n, (image_input, *_rest) in enumerate(inputs):
            groups.setdefault(tuple(image_input.batch.shape), []).append(n)
        try:
            model.eval()
            model.want_assign_stats = False
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                for members in groups.values():
                    for start in range(0, len(members), self.batch_size):
                        part = members[start:start + self.batch_size]
                        images = torch.cat([inputs[n][0].batch for n in part]).to(device)
                        cls, reg, sizes = model(images)
                        for j, n in enumerate(part):
                            image_input, boxes, labels, ignore = inputs[n]
                            batch = {"images": images[j:j + 1], "gt_boxes": [boxes.to(device)],
                                     "gt_labels": [labels.to(device)], "gt_boxes_ignore": [ignore.to(device)],
                                     "metas": [image_input.meta]}
                            outputs = (cls[j:j + 1].float(), reg[j:j + 1].float(), sizes)
                            _losses, traces[n] = model.loss_from_outputs(batch, outputs, trace_index=0)
        finally:
            model.train(was_training)
            model.want_assign_stats, model.assign_stats = wanted, stats
        return traces

    def measure(self, model, global_step: int = 0, epoch: int = 0) -> list[dict]:
        """One record per probe GT (see the module doc), not written."""
        out = []
        for n, trace in enumerate(self.traces(model)):
            out += gt_records(trace, image=n, global_step=global_step, epoch=epoch)
        return out


def gt_records(trace, *, image: int, global_step: int = 0, epoch: int = 0) -> list[dict]:
    """Per GT of ``trace``: positives (the assignment's, as the Assignment view counts them) and
    the mean per-prior cls / box loss over them (:func:`~detengine.trace.loss_breakdown`'s per-GT
    sums, as the Loss view shows them, divided by the positives)."""
    positives = trace.assign_result.num_pos_per_gt().cpu().tolist()
    per_gt = trace.loss_breakdown["per_gt"] if trace.loss is not None else None
    out = []
    for k, pos in enumerate(positives):
        cls = box = None
        if per_gt is not None and pos:
            cls, box = _short(per_gt["loss_cls"][k] / pos), _short(per_gt["loss_bbox"][k] / pos)
        out.append({"iter": int(global_step), "epoch": int(epoch), "image": image, "gt": k, "pos": int(pos),
                    "cls": cls, "box": box})
    return out


def make_probe(settings_probe, run_dir, dataset, test_pipeline, *, iters_per_epoch: int, seed: int = 0,
               size_divisor: int | None = None, batch_size: int = 8) -> tuple[TrainingProbe | None, str]:
    """(the run's probe or None when off, a sentence for the log)."""
    probe = check_probe_settings(settings_probe)
    every = probe_interval(probe["interval"], len(dataset), iters_per_epoch, probe["images"], batch_size)
    if every <= 0:
        why = (f"the training split has {len(dataset)} images, more than {AUTO_MAX_IMAGES}"
               if probe["interval"] == "auto" else "probe.interval=0")
        return None, (f"per-GT probe off ({why}); turn it on with probe=dict(interval=N) or --probe-interval N")
    tp = TrainingProbe(run_dir, dataset, test_pipeline, interval=every, images=probe["images"], seed=seed,
                       size_divisor=size_divisor, batch_size=batch_size)
    if not tp.images:
        return None, "per-GT probe off: no training image with a GT was found"
    return tp, (f"per-GT probe: {len(tp.images)} training images ({tp.num_gts} GTs) every {every} iterations and at "
                f"the end, in {tp.path.name}")


# ---------------------------------------------------------------------- reading (no torch)
@dataclass
class ProbeGT:
    """One probe GT and its history: ``iters`` (the global steps probed), ``pos`` (positives),
    ``cls`` / ``box`` (mean loss per positive; NaN without positives). ``box_xyxy`` in original
    pixels of ``file_name`` (``path`` when known)."""

    image: int
    gt: int
    file_name: str
    path: str | None
    box_xyxy: tuple
    label: int
    class_name: str
    input_size: tuple | None = None     # (w, h) in network-input pixels
    iters: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0))
    box: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def size(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box_xyxy
        return x2 - x1, y2 - y1

    @property
    def area(self) -> float:
        """Input-pixel area when known (what the assigner matched), else original pixels."""
        w, h = self.input_size or self.size
        return w * h

    @property
    def zero_fraction(self) -> float:
        """Share of the probes in which this GT had no positive (0 when never probed)."""
        return float((self.pos == 0).mean()) if len(self.pos) else 0.0

    @property
    def name(self) -> str:
        return f"{Path(self.file_name).name} GT{self.gt}"


@dataclass
class ProbeHistory:
    """A run's probe: its settings, images and per-GT histories."""

    run_dir: Path
    interval: int
    classes: list
    images: list[dict]
    gts: list[ProbeGT]

    @property
    def iterations(self) -> list[int]:
        return sorted({int(i) for g in self.gts for i in g.iters})

    def gt(self, image: int, gt: int) -> ProbeGT | None:
        return next((g for g in self.gts if g.image == image and g.gt == gt), None)

    def starved(self, min_fraction: float = 0.5) -> list[ProbeGT]:
        """GTs with zero positives in at least ``min_fraction`` of their probes (and probed at
        least once), most often starved first, then smallest."""
        out = [g for g in self.gts if len(g.pos) and g.zero_fraction >= min_fraction - 1e-12]
        return sorted(out, key=lambda g: (-g.zero_fraction, g.area, g.image, g.gt))


def has_probe(run_dir) -> bool:
    return (Path(run_dir) / PROBE_SET_FILE).is_file()


def read_probe(run_dir) -> ProbeHistory | None:
    """A run's probe history, or None when it has none. Duplicate (iteration, GT) records keep
    the last; a cut last line is skipped."""
    run_dir = Path(run_dir)
    try:
        saved = json.loads((run_dir / PROBE_SET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    classes = list(saved.get("classes") or [])
    images = list(saved.get("images") or [])
    series: dict[tuple[int, int], dict[int, tuple]] = {}
    path = run_dir / PROBE_FILE
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                    key, it = (int(r["image"]), int(r["gt"])), int(r["iter"])
                    series.setdefault(key, {})[it] = (int(r["pos"]), r.get("cls"), r.get("box"))
                except (ValueError, KeyError, TypeError):
                    continue
    gts = []
    nan = (lambda v: math.nan if v is None else float(v))
    for n, im in enumerate(images):
        inputs = im.get("input_boxes") or []
        for k, (box, label) in enumerate(zip(im.get("boxes") or [], im.get("labels") or [])):
            points = series.get((n, k), {})
            iters = np.array(sorted(points), np.int64)
            values = [points[i] for i in iters.tolist()]
            size = (inputs[k][2] - inputs[k][0], inputs[k][3] - inputs[k][1]) if k < len(inputs) else None
            gts.append(ProbeGT(n, k, str(im.get("file_name", "")), im.get("path"), tuple(float(v) for v in box),
                               int(label), classes[label] if 0 <= label < len(classes) else str(label), size, iters,
                               np.array([v[0] for v in values], np.int64), np.array([nan(v[1]) for v in values]),
                               np.array([nan(v[2]) for v in values])))
    return ProbeHistory(run_dir, int(saved.get("interval", 0)), classes, images, gts)



def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def probe_gt_in_project(project, gt: ProbeGT, min_iou: float = 0.5) -> tuple[int, int] | None:
    """``(image index, box id)`` of a probe GT in an annotation project, or None: the image with
    the probe image's path (else its file name, else its base name), the non-crowd box of the best
    IoU with the GT (at least ``min_iou``), of the GT's class when the project has a class of that
    name."""
    name, base = gt.file_name, Path(gt.file_name).name
    named = [i for i, rec in enumerate(project.images) if rec.file_name == name]
    candidates = named or [i for i, rec in enumerate(project.images) if Path(rec.file_name).name == base]
    if gt.path and len(candidates) > 1:
        same = [i for i in candidates if str(Path(project.image_path(i)).resolve()) == gt.path]
        candidates = same or candidates
    names = {c.id: c.name for c in project.categories}
    typed = gt.class_name in names.values()
    best = None
    for i in candidates:
        for box in project.images[i].boxes:
            if box.iscrowd or (typed and names.get(box.category_id) != gt.class_name):
                continue
            iou = _iou(box.xyxy, gt.box_xyxy)
            if iou >= min_iou and (best is None or iou > best[0]):
                best = (iou, i, box.id)
    return None if best is None else (best[1], best[2])
