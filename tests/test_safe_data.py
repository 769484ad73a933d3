"""Data files a user hands over, checked at load: paths that stay inside the dataset, annotations
that fit their images, downloads that stay inside their destination.

Each case runs through ``python -m course_lib`` (in-process) or the script's ``main`` where the
user meets it, and through the library call; each ends in one ``error:`` line (exit code 2) and
leaves every file as it was (sha256 snapshots), or gives the right result.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from standins import serve_offline
from test_bad_input import coco_folder, one_error_line, small_model, snapshot  # noqa: F401 (small_model: a fixture)
from test_data import CAR, H, W, coco_fixture, coco_server_files, fixture_ids, write_cityscapes_frame

from course_lib.cli import main
from course_lib.data.cityscapes import CityscapesInstances
from course_lib.data.coco_urban import CocoUrbanSubset
from course_lib.errors import BadInput
from course_lib.utils.download import download

EVAL_COCO = ["eval", "--data", "coco", "--model", "toycity", "--split", "val2017"]
EVAL_CITYSCAPES = ["eval", "--data", "cityscapes", "--model", "toycity", "--split", "val"]


def rewrite_instances(root: Path, change) -> None:
    """Apply ``change(instances)`` to ``root``'s COCO ``instances_val2017.json``, as a careless edit would."""
    path = root / "annotations" / "instances_val2017.json"
    instances = json.loads(path.read_text())
    change(instances)
    path.write_text(json.dumps(instances))


# --------------------------------------------------------------------------- paths from data files


@pytest.mark.parametrize("file_name", ["../../outside.jpg", "OUTSIDE", "..\\..\\outside.jpg", "val2017/../../outside.jpg",
                                       "C:/outside.jpg", "", "."],
                         ids=["dotdot", "absolute", "backslashes", "dotdot-inside", "drive", "empty", "dot"])
def test_a_coco_file_name_outside_the_root_is_refused(tmp_path, small_model, capsys, file_name):
    root = coco_folder(tmp_path / "coco", [])
    outside = tmp_path / "outside.jpg"  # a readable image of the right size: the old reader used it without a word
    shutil.copy(root / "val2017" / "000000000001.jpg", outside)
    name = str(outside) if file_name == "OUTSIDE" else file_name
    rewrite_instances(root, lambda instances: instances["images"][0].update(file_name=name))
    before = snapshot(tmp_path)
    assert main([*EVAL_COCO, "--root", str(root)]) == 2
    assert f"file_name {name!r} is not a file name inside the images folder" in one_error_line(capsys)
    with pytest.raises(BadInput, match="is not a file name inside the images folder"):
        CocoUrbanSubset(root)
    assert snapshot(tmp_path) == before


def test_a_coco_file_name_in_a_subfolder_is_read(tmp_path):
    root = coco_folder(tmp_path / "coco", [])
    (root / "val2017" / "sub").mkdir()
    (root / "val2017" / "000000000001.jpg").rename(root / "val2017" / "sub" / "a..b.jpg")  # '..' inside a name is fine
    rewrite_instances(root, lambda instances: instances["images"][0].update(file_name="./sub/a..b.jpg"))
    image, target = CocoUrbanSubset(root)[0]
    assert image.shape == (3, 64, 64) and target["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]


def test_every_accepted_file_name_stays_inside_the_folder():
    """Names generated from the parts that make paths escape: whatever is accepted, joined to the
    folder and normalised as POSIX and as Windows would, names a file strictly inside it."""
    import itertools
    import ntpath
    import posixpath

    from course_lib.data.coco_urban import relative_file_name

    pieces = ["a", "b.jpg", "..", ".", "", "C:", "/", "\\", "..."]
    accepted = 0
    for count in range(1, 5):
        for combination in itertools.product(pieces, repeat=count):
            text = "".join(combination)
            try:
                name = relative_file_name(text, "test")
            except BadInput:
                continue
            accepted += 1
            for flavour, root in ((posixpath, "/data/val2017"), (ntpath, "D:\\data\\val2017")):
                joined = flavour.normpath(flavour.join(root, text))
                assert joined.startswith(root + flavour.sep), (text, joined)
            assert name == text.replace("\\", "/")
    assert accepted > 100  # the ordinary names ("a/b.jpg", "...", "a.b.jpg") pass


def tampered_download(tmp_path: Path, monkeypatch, data_script, change) -> tuple:
    """download_coco.py with its server offline serving ``coco_fixture()`` after ``change(instances)``."""
    script = data_script("download_coco")
    instances = coco_fixture(base_url="file:///etc")  # coco_url is never used: images come from https URLs
    change(instances)
    asked = serve_offline(monkeypatch, script, coco_server_files(tmp_path / "server", script, instances))
    return script, asked


@pytest.mark.parametrize("file_name", ["../../escaped.jpg", "ABSOLUTE"], ids=["dotdot", "absolute"])
def test_download_coco_never_writes_outside_dest(tmp_path, monkeypatch, data_script, capsys, file_name):
    name = str(tmp_path / "escaped.jpg") if file_name == "ABSOLUTE" else file_name
    script, asked = tampered_download(tmp_path, monkeypatch, data_script,
                                      lambda instances: instances["images"][0].update(file_name=name))
    dest = tmp_path / "deep" / "coco"
    assert script.main(["--dest", str(dest)]) == 2
    assert "is not a file name inside the images folder" in one_error_line(capsys)
    assert not list(tmp_path.rglob("escaped.jpg")) and not (dest / "val2017").exists()
    assert asked == [script.ANNOTATIONS_URL]  # stopped before fetching any image


def test_download_coco_does_not_follow_a_symbolic_link_out_of_dest(tmp_path, monkeypatch, data_script, capsys):
    script, asked = tampered_download(tmp_path, monkeypatch, data_script,
                                      lambda instances: instances["images"][0].update(file_name="link/000000000001.jpg"))
    dest, elsewhere = tmp_path / "coco", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / "val2017").mkdir(parents=True)
    (dest / "val2017" / "link").symlink_to(elsewhere)
    assert script.main(["--dest", str(dest)]) == 2
    assert "leads outside" in one_error_line(capsys)
    assert list(elsewhere.iterdir()) == []


def test_download_coco_fetches_https_from_cocodataset_whatever_coco_url_says(tmp_path, monkeypatch, data_script):
    script, asked = tampered_download(tmp_path, monkeypatch, data_script, lambda instances: None)
    assert script.main(["--dest", str(tmp_path / "coco")]) == 0
    assert asked[0] == "https://images.cocodataset.org/annotations/annotations_trainval2017.zip"
    assert asked[1:] == [f"https://images.cocodataset.org/val2017/{i:012d}.jpg" for i in (1, 3)]


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://example.org/x.jpg", "data:,hello", "/etc/hostname"])
def test_download_refuses_urls_that_are_not_http(tmp_path, url):
    with pytest.raises(BadInput, match="not an https or http URL"):
        download(url, tmp_path / "x", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tamper", ["edited", "no-record"])
def test_download_coco_reverifies_a_cached_annotation_file(tmp_path, monkeypatch, data_script, capsys, tamper):
    script, asked = tampered_download(tmp_path, monkeypatch, data_script, lambda instances: None)
    dest = tmp_path / "coco"
    assert script.main(["--dest", str(dest)]) == 0
    cached = dest / script.INSTANCES_MEMBER
    if tamper == "edited":  # the same JSON with one file name turned into an escape
        cached.write_text(cached.read_text().replace('"000000000003.jpg"', '"../../000000000003.jpg"'))
    else:  # extracted by hand, or by an older version of the script
        cached.with_name(cached.name + ".sha256").unlink()
    before = snapshot(tmp_path)
    assert script.main(["--dest", str(dest)]) == 2
    assert f"{cached} is not the file this script extracted" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- COCO annotations checked at load


def test_a_coco_image_of_another_size_than_its_annotation_is_one_line(tmp_path, small_model, capsys):
    root = coco_folder(tmp_path / "coco", [])
    cv2.imwrite(str(root / "val2017" / "000000000001.jpg"), np.full((48, 64, 3), 90, np.uint8))  # annotated 64x64
    before = snapshot(tmp_path)
    assert main([*EVAL_COCO, "--root", str(root)]) == 2
    assert "000000000001.jpg is 64x48 pixels but its annotation says 64x64 (image id 1)" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_a_transposed_coco_size_is_caught_too(tmp_path):
    root = coco_folder(tmp_path / "coco", [])
    cv2.imwrite(str(root / "val2017" / "000000000001.jpg"), np.full((80, 64, 3), 90, np.uint8))
    rewrite_instances(root, lambda instances: instances["images"][0].update(height=64, width=80))  # H and W swapped
    with pytest.raises(BadInput, match="is 64x80 pixels but its annotation says 80x64"):
        CocoUrbanSubset(root)[0]


@pytest.mark.parametrize("size", [[32, 64], [64, 32], [65, 64]])
def test_a_coco_rle_of_another_size_than_its_image_is_one_line(tmp_path, small_model, capsys, size):
    from pycocotools import mask as mask_utils

    root = coco_folder(tmp_path / "coco", [])
    rle = mask_utils.encode(np.asfortranarray(np.ones(size, np.uint8)))
    rle["counts"] = rle["counts"].decode()
    rewrite_instances(root, lambda instances: instances["annotations"][0].update(segmentation=rle))
    before = snapshot(tmp_path)
    assert main([*EVAL_COCO, "--root", str(root)]) == 2
    assert f"COCO annotation 1 of image 1 is a {size[1]}x{size[0]} mask on a 64x64 image" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_duplicate_coco_image_ids_are_one_line(tmp_path, small_model, capsys):
    root = coco_folder(tmp_path / "coco", [])
    shutil.copy(root / "val2017" / "000000000001.jpg", root / "val2017" / "copy.jpg")
    rewrite_instances(root, lambda instances: instances["images"].append(
        {"id": 1, "file_name": "copy.jpg", "height": 64, "width": 64}))
    before = snapshot(tmp_path)
    assert main([*EVAL_COCO, "--root", str(root)]) == 2
    assert "image id 1 appears twice in 'images'" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("section, key", [
    ("images", "id"), ("images", "file_name"), ("images", "height"), ("images", "width"),
    ("annotations", "id"), ("annotations", "image_id"), ("annotations", "category_id"), ("annotations", "iscrowd"),
    ("annotations", "bbox"), ("annotations", "segmentation"),
])
def test_a_missing_coco_key_is_one_line_naming_it(tmp_path, section, key):
    root = coco_folder(tmp_path / "coco", [])
    rewrite_instances(root, lambda instances: instances[section][0].pop(key))
    with pytest.raises(BadInput, match=rf"{section}\[0\] has no '{key}'"):
        CocoUrbanSubset(root)[0]


@pytest.mark.parametrize("content, expected", [
    ("{\"images\": [", "not valid JSON"), ("[1, 2]", "not a COCO instances file"), ("{\"images\": []}", "no 'annotations' list"),
    ("{\"images\": [7], \"annotations\": []}", r"images\[0\] has no 'id'"),
], ids=["cut-short", "a-list", "no-annotations", "entry-not-an-object"])
def test_a_broken_coco_file_is_one_line(tmp_path, small_model, capsys, content, expected):
    root = coco_folder(tmp_path / "coco", [])
    (root / "annotations" / "instances_val2017.json").write_text(content)
    before = snapshot(tmp_path)
    assert main([*EVAL_COCO, "--root", str(root)]) == 2
    assert re.search(expected, one_error_line(capsys))
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- Cityscapes checked at load


def test_a_cityscapes_id_png_of_another_size_is_one_line(tmp_path, small_model, capsys):
    write_cityscapes_frame(tmp_path, "val", "frankfurt", "000000_000294", fixture_ids())
    ids_file = tmp_path / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_instanceIds.png"
    cv2.imwrite(str(ids_file), cv2.resize(fixture_ids().astype(np.uint16), (W * 2, H * 2), interpolation=cv2.INTER_NEAREST))
    before = snapshot(tmp_path)
    assert main([*EVAL_CITYSCAPES, "--root", str(tmp_path)]) == 2
    assert f"instanceIds.png is {2 * W}x{2 * H} pixels but its image frankfurt_000000_000294_leftImg8bit.png is {W}x{H}" \
        in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("first", [True, False], ids=["first-file", "later-file"])
def test_a_cut_short_cityscapes_id_png_is_one_line(tmp_path, small_model, capsys, first):
    write_cityscapes_frame(tmp_path, "val", "aachen", "000000_000019", fixture_ids())
    write_cityscapes_frame(tmp_path, "val", "bochum", "000000_000019", fixture_ids())
    damaged = next((tmp_path / "gtFine/val").glob(f"{'aachen' if first else 'bochum'}/*_instanceIds.png"))
    damaged.write_bytes(damaged.read_bytes()[:len(damaged.read_bytes()) // 2])
    before = snapshot(tmp_path)
    assert main([*EVAL_CITYSCAPES, "--root", str(tmp_path)]) == 2
    assert f"{damaged.name}: cannot read this id map" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_cityscapes_label_ids_in_place_of_instance_ids_are_refused(tmp_path, small_model, capsys):
    from course_lib.data.toycity import scene
    from course_lib.data.toycity.export import write_cityscapes

    write_cityscapes(tmp_path, "val", [scene(seed, 64, 128, semantic=True) for seed in (3, 4)])
    for labels in (tmp_path / "gtFine" / "val").glob("*/*_labelIds.png"):  # the 8-bit label files, under the instance files' names
        shutil.copy(labels, str(labels).replace("_labelIds", "_instanceIds"))
    before = snapshot(tmp_path)
    assert main([*EVAL_CITYSCAPES, "--root", str(tmp_path)]) == 2
    assert "none of the 2 *_gtFine_instanceIds.png files" in one_error_line(capsys)
    assert main(["train", "--data", "cityscapes", "--root", str(tmp_path), "--split", "val", "--steps", "1",
                 "--out", str(tmp_path.parent / f"{tmp_path.name}_run")]) == 2
    assert "look like *_labelIds.png" in one_error_line(capsys)
    assert snapshot(tmp_path) == before and not (tmp_path.parent / f"{tmp_path.name}_run").exists()


def test_a_cityscapes_split_whose_first_frames_hold_no_instance_is_read(tmp_path):
    write_cityscapes_frame(tmp_path, "val", "aachen", "000000_000019", np.full((H, W), 7))  # road only
    write_cityscapes_frame(tmp_path, "val", "aachen", "000001_000019", np.full((H, W), CAR))  # a car *group* only
    write_cityscapes_frame(tmp_path, "val", "bochum", "000000_000019", fixture_ids())
    dataset = CityscapesInstances(tmp_path, "val")
    assert [len(dataset[i][1]["labels"]) for i in range(3)] == [0, 0, 3]
    assert torch.equal(dataset[2][1]["masks"].sum(dim=0).bool(), torch.from_numpy(fixture_ids() >= 1000) & ~torch.from_numpy(
        fixture_ids() // 1000 == 29))  # every instance but the evaluation-ignored caravan


def test_a_coco_file_without_person_or_vehicle_images_is_one_line(tmp_path, small_model, capsys):
    root = coco_folder(tmp_path / "coco", [])
    rewrite_instances(root, lambda instances: instances["annotations"][0].update(category_id=18))  # the car becomes a dog
    before = snapshot(tmp_path)
    assert main([*EVAL_COCO, "--root", str(root)]) == 2
    assert "no image has a (non-crowd) annotation of COCO categories [1, 2, 3, 4, 6, 7, 8]" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("scale", ["0", "-0.5", "1.5", "nan"])
def test_a_cityscapes_scale_out_of_range_is_one_line(tmp_path, small_model, capsys, scale):
    write_cityscapes_frame(tmp_path, "val", "frankfurt", "000000_000294", fixture_ids())
    assert main([*EVAL_CITYSCAPES, "--root", str(tmp_path), "--scale", scale]) == 2
    assert "give a downscale factor in (0, 1]" in one_error_line(capsys)
    with pytest.raises(BadInput, match=r"in \(0, 1\]"):
        CityscapesInstances(tmp_path, "val", scale=float(scale))


@pytest.mark.parametrize("count", ["0", "-3"])
def test_download_coco_needs_at_least_one_image(tmp_path, monkeypatch, data_script, capsys, count):
    script, asked = tampered_download(tmp_path, monkeypatch, data_script, lambda instances: None)
    with pytest.raises(SystemExit) as stop:
        script.main(["--dest", str(tmp_path / "coco"), "--max-images", count])
    assert stop.value.code == 2 and f"--max-images {count}: give 1 or more" in capsys.readouterr().err
    assert asked == [] and not (tmp_path / "coco").exists()


def test_download_coco_offline_or_given_a_broken_image_is_one_line(tmp_path, monkeypatch, data_script, capsys):
    script, asked = tampered_download(tmp_path, monkeypatch, data_script, lambda instances: None)
    (tmp_path / "server" / "000000000003.jpg").write_bytes(b"<html>not found</html>")  # a server's error page
    dest = tmp_path / "coco"
    assert script.main(["--dest", str(dest)]) == 2
    assert "000000000003.jpg is not a valid image" in one_error_line(capsys)
    assert not (dest / "val2017" / "000000000003.jpg").exists() and (dest / "val2017" / "000000000001.jpg").is_file()
    serve_offline(monkeypatch, script, {})  # offline: the next run has everything but the deleted image
    assert script.main(["--dest", str(dest)]) == 2
    assert "cannot reach https://images.cocodataset.org/val2017/000000000003.jpg" in one_error_line(capsys)
