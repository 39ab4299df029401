"""PubMed specifics: the presets, NCBI's `.md5` files and the order files must be loaded in."""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["PRESETS", "file_order", "parse_md5_file", "pubmed_name", "pubmed_number",
           "pubmed_year"]

NCBI_FTP = "ftp://ftp.ncbi.nlm.nih.gov"

# name -> (URL, default selection). Each data file's NAME.md5 travels with it.
PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pubmed:baseline": (f"{NCBI_FTP}/pubmed/baseline/", ("*.xml.gz",)),
    "pubmed:updatefiles": (f"{NCBI_FTP}/pubmed/updatefiles/", ("*.xml.gz",)),
}

_HEX = r"(?P<hex>[0-9A-Fa-f]{32})"
_MD5_FORMS = (
    re.compile(rf"MD5 ?\((?P<name>.+)\) ?= ?{_HEX}"),  # NCBI (openssl): MD5(NAME)= hex
    re.compile(rf"{_HEX} [ *]?(?P<name>.+)"),  # md5sum: hex  NAME, hex *NAME
    re.compile(_HEX),  # the bare digest
)


def parse_md5_file(text: bytes, name: str) -> str:
    """The lowercase hex digest an NCBI `.md5` file gives for `name`.

    Accepts `MD5(NAME)= <hex>` (NCBI's), `<hex>  NAME` (md5sum's) and a bare `<hex>`; a file
    naming another file, or anything else, raises ValueError. A nested `name` (`a/b/NAME`)
    is named by NAME: a `.md5` file names its file as it is in its own directory.
    """
    name = name.rsplit("/", 1)[-1]
    try:
        decoded = text.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not text") from None
    lines = [line.strip() for line in decoded.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one line, got {len(lines)}")
    for form in _MD5_FORMS:
        match = form.fullmatch(lines[0])
        if match is None:
            continue
        named = match.groupdict().get("name")
        if named is not None and named.strip().lstrip("*").rsplit("/", 1)[-1] != name:
            raise ValueError(f"it is the checksum of {named.strip()!r}, not of {name!r}")
        return match.group("hex").lower()
    raise ValueError(f"no MD5 digest in {lines[0][:80]!r}")


def file_order(name: str) -> str:
    """A sort key putting files in PubMed's load order: pubmed26n0002 before pubmed26n0010
    (numbers compare as numbers, whatever their zero padding, and before text). One short
    string per name, each run of digits written as NUL, its length without leading zeros,
    the digits: a key of tuples took ~600 bytes a name, 180 MB for 300,000 names."""
    return _DIGITS.sub(_number, name)


_DIGITS = re.compile(r"[0-9]+")


def _number(match: re.Match[str]) -> str:
    digits = match.group().lstrip("0")
    return f"\0{chr(len(digits))}{digits}"


# NCBI's data files: pubmed26n0001.xml.gz, the year (2026) and the file number (1)
_PUBMED_NAME = re.compile(r"pubmed(?P<yy>\d{2})n(?P<number>\d{4,})\.xml\.gz")


def pubmed_year(name: str) -> int | None:
    """The year of a PubMed data file (`pubmed26n0001.xml.gz` -> 2026); None for any other
    name (its NAME.md5 included)."""
    match = _PUBMED_NAME.fullmatch(name)
    return None if match is None else 2000 + int(match.group("yy"))


def pubmed_number(name: str) -> int | None:
    """The file number of a PubMed data file (`pubmed26n0001.xml.gz` -> 1), which gives
    its place in the load order; None for any other name."""
    match = _PUBMED_NAME.fullmatch(name)
    return None if match is None else int(match.group("number"))


def year_takes_over(numbers: Collection[int], old_listed: int) -> bool:
    """Whether a newer PubMed year whose listed files have these `numbers` is the one that
    replaces the year before, of which the listing still holds `old_listed` files: its
    numbers run without a gap, and it holds at least as many files as the listing still
    holds of the year before (each year's baseline is larger; NCBI removes the old year's
    files once the new one is out). A baseline being uploaded, a stray file of a year to
    come, or an upload with a hole does not."""
    if not numbers:
        return False
    whole = max(numbers) - min(numbers) + 1 == len(set(numbers))
    return whole and len(numbers) >= old_listed


def pubmed_name(year: int, number: int) -> str:
    """The name NCBI gives file `number` of `year` (the inverse of the two above)."""
    return f"pubmed{year % 100:02d}n{number:04d}.xml.gz"
