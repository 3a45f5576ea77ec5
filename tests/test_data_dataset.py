"""StrokeClips on a tiny store built with write_video_entry: items, labels, negatives, seeding, workers."""

import numpy as np
import pytest
import torch

from tstcnn.config import DataConfig, PrepConfig
from tstcnn.data import EpochSampler, StrokeClips, build_dataloader
from tstcnn.prep.store import Store, finalize_store, write_video_entry
from tstcnn.taxonomy import Taxonomy

from store_helpers import W, synthetic_video

CLASSES = ("Serve Forehand Loop", "Serve Backhand Loop", "Negative")
CLIP = (8, 32, 32)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("store")
    videos = {
        "long": (60, {"split": "train", "label": None,
                      "actions": [[10, 30, CLASSES[0]], [40, 52, CLASSES[1]]]}),
        "short": (5, {"split": "train", "label": CLASSES[0], "actions": []}),
        "held": (20, {"split": "validation", "label": CLASSES[1], "actions": []}),
    }
    for seed, (video_id, (frames, meta)) in enumerate(videos.items()):
        write_video_entry(root, video_id, *synthetic_video(frames, seed), {**meta, "fps": 25.0})
    finalize_store(root, PrepConfig(width=W), CLASSES)
    return Store(root)


def _dataset(store, split="train", modality="twin", augment=True, **data):
    return StrokeClips(store, split, modality, CLIP, augment, DataConfig(**data), seed=3)


@pytest.mark.parametrize("modality, keys", [("twin", {"rgb", "flow"}), ("rgb", {"rgb"}), ("i3d-flow", {"flow"})])
def test_items_have_the_contract_shapes_ranges_and_dtypes(store, modality, keys):
    dataset = _dataset(store, modality=modality)
    inputs, label = dataset[0]
    assert set(inputs) == keys and isinstance(label, int)
    if "rgb" in inputs:
        rgb = inputs["rgb"]
        assert rgb.shape == (3, *CLIP) and rgb.dtype == torch.float32 and rgb.is_contiguous()
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0 and rgb.max() > 0.9  # the bright square is in the crop
    if "flow" in inputs:
        flow = inputs["flow"]
        assert flow.shape == (2, *CLIP) and flow.dtype == torch.float32 and flow.is_contiguous()
        assert flow.min() >= -1.0 and flow.max() <= 1.0 and flow.abs().max() > 0.1


def test_samples_are_strokes_trimmed_clips_and_capped_negatives(store):
    dataset = _dataset(store)
    strokes = [(s.video_id, s.begin, s.end, s.label) for s in dataset.segments if s.label != "Negative"]
    assert strokes == [("long", 10, 30, CLASSES[0]), ("long", 40, 52, CLASSES[1]), ("short", 0, 5, CLASSES[0])]
    negatives = [s for s in dataset.segments if s.label == "Negative"]
    assert len(negatives) == 2  # 3 gaps of ≥ 8 frames, capped at 1 × mean(2, 1) = 1.5 → 2
    assert all((n.begin, n.end) in {(0, 10), (30, 40), (52, 60)} for n in negatives)
    assert dataset.labels == [Taxonomy(CLASSES).index(s.label) for s in dataset.segments]
    assert len(_dataset(store, negatives_per_class=3.0)) == 6
    assert len(_dataset(store, negatives_per_class=0.0)) == 3
    no_negative = StrokeClips(store, "train", "rgb", CLIP, False, DataConfig(), classes=Taxonomy(CLASSES[:2]))
    assert len(no_negative) == 3
    held = _dataset(store, split="validation")
    assert [(s.video_id, s.label) for s in held.segments] == [("held", CLASSES[1])]


def test_without_augmentation_the_clip_is_the_stores_centred_roi_crop(store):
    dataset = _dataset(store, augment=False)
    inputs, _ = dataset[0]  # stroke [10, 30): centred start 16
    reference = store.read_clip("long", 16, CLIP[0], CLIP[1:])
    rgb = inputs["rgb"].permute(1, 2, 3, 0).numpy() * 255
    assert np.abs(rgb - reference["rgb"]).max() < 1e-3
    flow = inputs["flow"].permute(1, 2, 3, 0).numpy() * store.flow_scale
    expected = np.clip(reference["flow"], -store.flow_scale, store.flow_scale)
    assert np.abs(flow - expected)[:, 1:-1, 1:-1].max() < 1e-4  # the border rows use real neighbours here
    again, _ = dataset[(0, 5)]
    assert torch.equal(again["rgb"], inputs["rgb"])  # no randomness at all


def test_short_clip_is_padded_with_its_edge_frames(store):
    dataset = _dataset(store, augment=False)
    index = [s.video_id for s in dataset.segments].index("short")
    rgb = dataset[index][0]["rgb"]  # 5 frames → 1 copy of the first before, 2 of the last after
    frames = [rgb[:, t] for t in range(CLIP[0])]
    assert torch.equal(frames[0], frames[1]) and not torch.equal(frames[1], frames[2])
    assert torch.equal(frames[5], frames[6]) and torch.equal(frames[6], frames[7])
    reference = store.read_clip("short", 0, 5, CLIP[1:])["rgb"]
    assert np.abs(rgb[:, 1:6].permute(1, 2, 3, 0).numpy() * 255 - reference).max() < 1e-3


def test_augmentation_is_seeded_per_item_and_epoch(store):
    dataset = _dataset(store)
    first, _ = dataset[(0, 0)]
    assert torch.equal(first["flow"], dataset[(0, 0)][0]["flow"])
    assert torch.equal(first["rgb"], dataset[0][0]["rgb"])  # an int index is epoch 0
    assert not torch.equal(first["rgb"], dataset[(0, 1)][0]["rgb"])
    other_seed = StrokeClips(store, "train", "twin", CLIP, True, DataConfig(), seed=4)
    assert not torch.equal(first["rgb"], other_seed[(0, 0)][0]["rgb"])
    plain = _dataset(store, augment=False)[0][0]
    assert not torch.equal(first["rgb"], plain["rgb"])


def _epochs(loader, count):
    return [[(batch[0]["rgb"].clone(), batch[0]["flow"].clone(), batch[1].clone()) for batch in loader]
            for _ in range(count)]


def test_loader_is_reproducible_across_worker_counts(store):
    dataset = _dataset(store)
    serial = _epochs(build_dataloader(dataset, batch_size=2, shuffle=True, num_workers=0, seed=11), 2)
    parallel = _epochs(build_dataloader(dataset, batch_size=2, shuffle=True, num_workers=2, seed=11), 2)
    for epoch_a, epoch_b in zip(serial, parallel):
        for (rgb_a, flow_a, y_a), (rgb_b, flow_b, y_b) in zip(epoch_a, epoch_b, strict=True):
            assert torch.equal(rgb_a, rgb_b) and torch.equal(flow_a, flow_b) and torch.equal(y_a, y_b)
    assert serial[0][0][0].shape == (2, 3, *CLIP) and serial[0][0][2].dtype == torch.int64
    ordered = build_dataloader(dataset, batch_size=3, shuffle=False, num_workers=0, seed=11)
    first = next(iter(ordered))  # batches are read straight into place: the same as the items, stacked
    items = [dataset[(i, 0)] for i in range(3)]
    assert torch.equal(first[0]["rgb"], torch.stack([x["rgb"] for x, _ in items]))
    assert torch.equal(first[0]["flow"], torch.stack([x["flow"] for x, _ in items]))
    assert first[1].tolist() == [y for _, y in items]
    assert ordered.dataset.classes == dataset.classes and len(ordered.dataset) == len(dataset)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(serial[0], serial[1]))  # epochs differ


def test_distributed_sampler_shards_one_shared_order():
    shards = [list(EpochSampler(10, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    indices = [i for s in shards for i, _ in s]
    assert set(indices) == set(range(10))
    assert all(epoch == 0 for s in shards for _, epoch in s)
    sampler = EpochSampler(10, shuffle=True, seed=1)
    assert [i for i, _ in sampler] != [i for i, _ in sampler]  # the epoch advances with each pass


def test_bad_requests_fail_with_a_clear_message(store):
    with pytest.raises(ValueError, match="smaller than the model.s 64x64 crop"):
        StrokeClips(store, "train", "twin", (8, 64, 64), False, DataConfig())
    with pytest.raises(ValueError, match="unknown modality"):
        StrokeClips(store, "train", "depth", CLIP, False, DataConfig())
    with pytest.raises(ValueError, match="not in the taxonomy"):
        StrokeClips(store, "train", "rgb", CLIP, False, DataConfig(), classes=Taxonomy(("Other", "Negative")))


def test_odd_clip_sizes_are_trimmed_from_the_even_crop(store):
    dataset = StrokeClips(store, "train", "twin", (8, 31, 33), False, DataConfig(), seed=3)
    inputs, _ = dataset[0]
    assert inputs["rgb"].shape == (3, 8, 31, 33) and inputs["flow"].shape == (2, 8, 31, 33)
    reference = store.read_clip("long", 16, 8, (31, 33))
    assert np.abs(inputs["rgb"].permute(1, 2, 3, 0).numpy() * 255 - reference["rgb"]).max() < 1e-3
    batch, _ = next(iter(build_dataloader(dataset, batch_size=2, shuffle=False, num_workers=0, seed=0)))
    assert torch.equal(batch["flow"][0], inputs["flow"]) and torch.equal(batch["rgb"][0], inputs["rgb"])
