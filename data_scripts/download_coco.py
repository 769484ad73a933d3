"""Download COCO val2017 annotations and a person + vehicle subset of its images.

    python data_scripts/download_coco.py --dest ~/data/coco --max-images 500

Writes ``DEST/annotations/instances_val2017.json`` (official), ``DEST/annotations/urban_val2017.json``
(the subset: images with a non-crowd person, bicycle, car, motorcycle, bus, train or truck) and
``DEST/val2017/*.jpg``; read it with ``course_lib.data.coco_urban.CocoUrbanSubset(DEST)``.

The annotation archive (242 MB) is checked against its published MD5 and resumes after an
interruption; the sha256 of the annotation file it holds is recorded beside it when extracted and
checked whenever a later run reuses that file. COCO publishes no per-image checksums, so each image
is checked by decoding it; every file is written atomically, so re-running the script fetches only
what is missing. Everything comes over https from images.cocodataset.org: an image's URL is made
from its ``file_name`` (never the file's own ``coco_url``), and a ``file_name`` that would lead
outside ``DEST/val2017`` (``..``, an absolute path, a symbolic link) stops the script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.parse
import zipfile
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from course_lib.data.coco_urban import CocoUrbanSubset, coco_urban_subset, read_instances, relative_file_name
from course_lib.errors import BadInput, UserError
from course_lib.utils.atomic import atomic_path, write_text
from course_lib.utils.download import download, file_digest

ANNOTATIONS_URL = "https://images.cocodataset.org/annotations/annotations_trainval2017.zip"
ANNOTATIONS_MD5 = "f4bbac642086de4f52a3fdda2de5fa2c"
INSTANCES_MEMBER = "annotations/instances_val2017.json"
SPLIT = "val2017"
IMAGE_URL = "https://images.cocodataset.org/" + SPLIT + "/{file_name}"


def fetch_annotations(dest: Path) -> dict:
    """Download (resumable, MD5-checked) the archive once, extract the val2017 instances file and record
    its sha256 beside it (``.sha256``); a later run reuses the file only if it still has that sha256."""
    instances = dest / INSTANCES_MEMBER
    recorded = instances.with_name(instances.name + ".sha256")
    if not instances.is_file():
        archive = download(ANNOTATIONS_URL, dest / "annotations_trainval2017.zip", md5=ANNOTATIONS_MD5)
        with zipfile.ZipFile(archive) as zipped, atomic_path(instances) as tmp:
            with zipped.open(INSTANCES_MEMBER) as member, open(tmp, "wb") as out:
                shutil.copyfileobj(member, out)  # streamed: the file is ~450 MB
            write_text(recorded, file_digest(tmp) + "\n")
    elif not recorded.is_file() or recorded.read_text().strip() != file_digest(instances):
        raise BadInput(f"{instances} is not the file this script extracted from the checked archive (changed since, or "
                       f"no {recorded.name} beside it): delete both and run the script again")
    return read_instances(instances)


def image_destination(folder: Path, file_name: str) -> Path:
    """Where image ``file_name`` goes: inside ``folder`` also after following symbolic links, else :class:`BadInput`."""
    path = folder / relative_file_name(file_name, str(folder))
    if not path.resolve().is_relative_to(folder.resolve()):
        raise BadInput(f"{path} leads outside {folder} (a symbolic link on the way): remove the link and run again")
    return path


def fetch_image(image: dict, folder: Path) -> None:
    """Download one image unless present; a file that does not decode is deleted and reported."""
    path = image_destination(folder, image["file_name"])
    download(IMAGE_URL.format(file_name=urllib.parse.quote(path.relative_to(folder).as_posix())), path, progress=False)
    try:
        with Image.open(path) as picture:
            picture.verify()
    except Exception as error:
        path.unlink()
        raise BadInput(f"{path} is not a valid image ({error}); it was deleted, run the script again") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True, help="target folder, e.g. ~/data/coco")
    parser.add_argument("--max-images", type=int, default=500, help="images in the subset (the first by id)")
    args = parser.parse_args(argv)
    if args.max_images < 1:
        parser.error(f"--max-images {args.max_images}: give 1 or more")
    dest = args.dest.expanduser()
    try:
        subset = coco_urban_subset(fetch_annotations(dest), args.max_images)
        for image in tqdm(subset["images"], desc=f"{SPLIT} images", unit="image"):
            fetch_image(image, dest / SPLIT)
        subset_file = dest / "annotations" / f"urban_{SPLIT}.json"
        write_text(subset_file, json.dumps(subset))
        (dest / "annotations_trainval2017.zip").unlink(missing_ok=True)  # its one needed file is extracted
        dataset = CocoUrbanSubset(dest, SPLIT)
    except (UserError, ConnectionError) as error:  # ConnectionError: offline, with what to do about it
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"COCO urban subset ready: {len(dataset)} images, annotations in {subset_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
