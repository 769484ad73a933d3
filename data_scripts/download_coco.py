"""Download COCO val2017 annotations and a person + vehicle subset of its images.

    python data_scripts/download_coco.py --dest ~/data/coco --max-images 500

Writes ``DEST/annotations/instances_val2017.json`` (official), ``DEST/annotations/urban_val2017.json``
(the subset: images with a non-crowd person, bicycle, car, motorcycle, bus, train or truck) and
``DEST/val2017/*.jpg``; read it with ``course_lib.data.coco_urban.CocoUrbanSubset(DEST)``.

The annotation archive (242 MB) is checked against its published MD5 and resumes after an
interruption. COCO publishes no per-image checksums, so each image is checked by decoding it;
every file is written atomically, so re-running the script fetches only what is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from course_lib.data.coco_urban import CocoUrbanSubset, coco_urban_subset
from course_lib.utils.atomic import atomic_path, write_text
from course_lib.utils.download import download

ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
ANNOTATIONS_MD5 = "f4bbac642086de4f52a3fdda2de5fa2c"
INSTANCES_MEMBER = "annotations/instances_val2017.json"


def fetch_annotations(dest: Path) -> dict:
    """Download (resumable, MD5-checked) the archive once and extract the val2017 instances file."""
    instances = dest / INSTANCES_MEMBER
    if not instances.is_file():
        archive = download(ANNOTATIONS_URL, dest / "annotations_trainval2017.zip", md5=ANNOTATIONS_MD5)
        with zipfile.ZipFile(archive) as zipped, atomic_path(instances) as tmp:
            with zipped.open(INSTANCES_MEMBER) as member, open(tmp, "wb") as out:
                shutil.copyfileobj(member, out)  # streamed: the file is ~450 MB
    return json.loads(instances.read_text())


def fetch_image(image: dict, folder: Path) -> None:
    """Download one image unless present; a file that does not decode is deleted and reported."""
    path = download(image["coco_url"], folder / image["file_name"], progress=False)
    try:
        with Image.open(path) as picture:
            picture.verify()
    except Exception as error:
        path.unlink()
        raise SystemExit(f"{path} is not a valid image ({error}); it was deleted, run the script again") from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True, help="target folder, e.g. ~/data/coco")
    parser.add_argument("--max-images", type=int, default=500, help="images in the subset (the first by id)")
    args = parser.parse_args(argv)
    dest = args.dest.expanduser()

    subset = coco_urban_subset(fetch_annotations(dest), args.max_images)
    for image in tqdm(subset["images"], desc="val2017 images", unit="image"):
        fetch_image(image, dest / "val2017")
    subset_file = dest / "annotations" / "urban_val2017.json"
    write_text(subset_file, json.dumps(subset))
    (dest / "annotations_trainval2017.zip").unlink(missing_ok=True)  # its one needed file is extracted

    dataset = CocoUrbanSubset(dest, "val2017")
    print(f"COCO urban subset ready: {len(dataset)} images, annotations in {subset_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
