"""Download and unpack Cityscapes (fine annotations + left 8-bit images), then check the layout.

    python data_scripts/download_cityscapes.py --dest ~/data/cityscapes
    export CITYSCAPES_DATASET=~/data/cityscapes

Cityscapes needs a free account (https://www.cityscapes-dataset.com/register/) and the
acceptance of its licence; this script cannot and does not bypass that. It logs in with *your*
username and password (from ``CITYSCAPES_USERNAME`` / ``CITYSCAPES_PASSWORD`` or asked for on the
terminal) and keeps them in memory only. cityscapesscripts' own ``csDownload`` offers to save them
unencrypted in a file; this script never does. The download itself is cityscapesscripts'
(``download_packages``: progress bar, resume, MD5 check against the server's checksum).

Default packages: gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB).
``--check-only`` just verifies an existing folder.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from course_lib.data.cityscapes import cityscapes_pairs

PACKAGES = ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip")
LOGIN_URL = "https://www.cityscapes-dataset.com/login"
EXPECTED_IMAGES = {"train": 2975, "val": 500}


def login(username: str, password: str):
    """A requests session logged in to cityscapes-dataset.com (the site redirects on success)."""
    import requests

    session = requests.Session()
    session.get(LOGIN_URL, allow_redirects=False).raise_for_status()
    response = session.post(LOGIN_URL, data={"username": username, "password": password, "submit": "Login"},
                            allow_redirects=False)
    response.raise_for_status()
    if response.status_code != 302:
        raise SystemExit("Cityscapes login failed: check your username and password (or register first).")
    return session


def credentials() -> tuple[str, str]:
    """Username and password from the environment or the terminal; never written anywhere."""
    username = os.environ.get("CITYSCAPES_USERNAME") or input("Cityscapes username or e-mail: ")
    password = os.environ.get("CITYSCAPES_PASSWORD") or getpass.getpass("Cityscapes password: ")
    return username, password


def extract(zip_path: Path, dest: Path) -> None:
    """Unpack ``zip_path`` into ``dest`` with a progress bar, then mark it done."""
    with zipfile.ZipFile(zip_path) as archive:
        for member in tqdm(archive.infolist(), desc=f"extracting {zip_path.name}", unit="file"):
            archive.extract(member, dest)
    (dest / f".{zip_path.name}.extracted").touch()


def check(dest: Path) -> bool:
    """Print the image count of each split; False (with the reason) if the layout is incomplete."""
    ok = True
    for split, expected in EXPECTED_IMAGES.items():
        try:
            n = len(cityscapes_pairs(dest, split))
        except FileNotFoundError as error:
            print(f"{split}: {error}")
            ok = False
            continue
        note = "" if n == expected else f" (the full release has {expected}: incomplete extraction?)"
        print(f"{split}: {n} image/annotation pairs{note}")
        ok &= n == expected
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=os.environ.get("CITYSCAPES_DATASET"),
                        help="target folder (default: $CITYSCAPES_DATASET)")
    parser.add_argument("--packages", nargs="+", default=PACKAGES)
    parser.add_argument("--keep-zips", action="store_true", help="keep the zip files after extraction")
    parser.add_argument("--check-only", action="store_true", help="only check an existing folder")
    args = parser.parse_args(argv)
    if args.dest is None:
        parser.error("pass --dest or set CITYSCAPES_DATASET")
    dest = args.dest.expanduser()
    if not args.check_only:
        from cityscapesscripts.download.downloader import download_packages

        dest.mkdir(parents=True, exist_ok=True)
        todo = [p for p in args.packages if not (dest / f".{p}.extracted").exists()]
        # a complete zip has its central directory; an absent or partial one needs downloading
        missing = [p for p in todo if not zipfile.is_zipfile(dest / p)]
        session = login(*credentials()) if missing else None
        for package in todo:
            zip_path = dest / package
            if package in missing:
                download_packages(session=session, package_names=[package], destination_path=str(dest),
                                  resume=zip_path.exists())
            extract(zip_path, dest)
            if not args.keep_zips:
                zip_path.unlink()
    ok = check(dest)
    if ok:
        print(f"Cityscapes is ready. Use it with: export CITYSCAPES_DATASET={dest}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
