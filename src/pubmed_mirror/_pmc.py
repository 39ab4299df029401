"""PMC's Article Datasets: the presets that name parts of the `pmc-oa-opendata` bucket.

The bucket's layout since 2026-04-13 (its README.txt; PMC's page "Accessing PMC Article
Datasets Using Amazon Web Services"): one prefix per article version at the root,
`PMC13901.1/` holding `PMC13901.1.xml` (JATS), `.txt`, `.json` (metadata) and, where the
licence permits, the PDF and media files; `metadata/PMC13901.1.json`, the same JSON for
every version under one prefix; `inventory-reports/` (a daily S3 inventory of metadata/);
`README.txt`; and `deprecated/`, the legacy prefixes (`oa_comm/`, `oa_noncomm/`, ...) until
PMC removes them. In that layout every article-version prefix, and nothing else at the
root, begins with `PMC`, so the articles' listing is ListObjectsV2 with the prefix `PMC`:
none of metadata/, the inventory or deprecated/ is paged through.

The legacy groups are no prefix any more: a version's JSON says what it is
(`is_pmc_openaccess`, `is_manuscript`, `license_code` such as "CC BY" or "CC BY-NC-ND").
`pmc:oa_comm` and the others are the article versions whose JSON puts them in that group,
as PMC defined the groups: commercial use allowed (CC0, CC BY, CC BY-SA, CC BY-ND),
non-commercial use only (CC BY-NC, CC BY-NC-SA, CC BY-NC-ND), any other licence or none,
and author manuscripts. Each version is decided by its own JSON (`_select`): read once,
remembered in the manifest by its ETag.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace

from ._errors import BadSource
from ._proxy import Proxy
from ._s3 import S3Source

__all__ = ["PMC_BUCKET", "PMC_PRESETS", "LicenceRule", "licence_code", "pmc_source"]

PMC_BUCKET = "pmc-oa-opendata"

# name -> (the S3 prefix whose keys are named relative to it, the keys' narrowing below it)
PMC_PRESETS: dict[str, tuple[str, str]] = {
    "pmc:metadata": ("metadata/", ""),  # one JSON per article version: the dataset's index
    "pmc:articles": ("", "PMC"),  # every article-version prefix, as PMCxxx.N/NAME
    "pmc:oa_comm": ("", "PMC"),  # those of them whose JSON says so (`LicenceRule`)
    "pmc:oa_noncomm": ("", "PMC"),
    "pmc:oa_other": ("", "PMC"),
    "pmc:author_manuscript": ("", "PMC"),
}

COMMERCIAL = frozenset({"CC0", "CC BY", "CC BY-SA", "CC BY-ND"})
NONCOMMERCIAL = frozenset({"CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND"})
_GROUPS = {
    "oa_comm": "open access, commercial use allowed",
    "oa_noncomm": "open access, non-commercial use only",
    "oa_other": "open access, another licence or none",
    "author_manuscript": "author manuscripts",
}
_VERSION = re.compile(r"PMC\d+\.\d+")


_FILLER = re.compile(r"V?\d+(\.\d+)*|INTERNATIONAL|UNIVERSAL|IGO|UNPORTED|GENERIC|LICEN[CS]E")
_TERMS = ("NC", "SA", "ND")


def licence_code(code: object) -> str:
    """A `license_code` in PMC's spelling ("CC BY-NC-ND"), whichever way it was written:
    "cc-by-nc-nd-4.0", "CC BY-NC-ND 4.0 IGO", "CC BY-NC-ND 3.0 DE" (a ported one), "CC
    BY-ND-NC" are "CC BY-NC-ND"; "CC0 1.0 Universal" and "CC-0" are "CC0"; a code of no
    Creative Commons licence, upper-cased."""
    said = [w for w in re.split(r"[\s_/-]+", str(code or "").upper()) if w]
    if said[:2] in (["CC", "0"], ["CC", "ZERO"]):  # before "0" goes as a version number
        said[:2] = ["CC0"]
    words = [w for w in said if not _FILLER.fullmatch(w)]
    if words == ["CC0"]:
        return "CC0"
    # after the terms, a two-letter word is a ported licence's jurisdiction ("DE", "US")
    terms = [w for w in words[2:] if w in _TERMS or len(w) != 2 or not w.isalpha()]
    if words[:2] == ["CC", "BY"] and len(set(terms)) == len(terms) and set(terms) <= set(
            _TERMS) and not {"SA", "ND"} <= set(terms):
        return "-".join(["CC BY", *(t for t in _TERMS if t in terms)])
    return " ".join(words)


def _flag(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


@dataclass(frozen=True, slots=True)
class LicenceRule:
    """The article versions (`PMCxxx.N/`) of one of PMC's legacy groups, by each version's
    own JSON (`PMCxxx.N/PMCxxx.N.json`): a `_select.Rule`."""

    subset: str  # a key of _GROUPS

    def __str__(self) -> str:
        return f"{self.subset}: {_GROUPS[self.subset]}"

    def group(self, name: str) -> str | None:
        head = name.split("/", 1)[0]
        return head if "/" in name and _VERSION.fullmatch(head) else None

    def index(self, group: str) -> str:
        return f"{group}/{group}.json"

    def facts(self, group: str, document: bytes) -> str:
        """`[open, manuscript, license_code]` from the version's JSON, the code as written
        (`chosen` reads it: a remembered one is read by today's rule); ValueError when the
        JSON is not one, or is another version's."""
        try:
            meta = json.loads(document)
        except RecursionError:  # nested deeper than the parser goes: no metadata of PMC's
            raise ValueError("nested too deep to be read") from None
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        pmcid, number = group.split(".")
        if str(meta.get("pmcid", pmcid)) != pmcid or str(meta.get("version", number)) != number:
            raise ValueError(f"it describes {meta.get('pmcid')}.{meta.get('version')}")
        code = meta.get("license_code")
        return json.dumps([_flag(meta.get("is_pmc_openaccess")),
                           _flag(meta.get("is_manuscript")),
                           code if isinstance(code, str) else None])

    def chosen(self, facts: str) -> bool:
        """Whether the version is in the group, by what `facts` kept; ValueError when
        `facts` is not what `facts` writes (another rule's, or another time's)."""
        try:
            open_access, manuscript, code = json.loads(facts)
        except (TypeError, ValueError):
            raise ValueError(f"not a licence rule's facts: {facts[:80]!r}") from None
        licence = licence_code(code)
        if self.subset == "author_manuscript":
            return bool(manuscript)
        if not open_access or manuscript:
            return False
        if self.subset == "oa_comm":
            return licence in COMMERCIAL
        if self.subset == "oa_noncomm":
            return licence in NONCOMMERCIAL
        return licence not in COMMERCIAL | NONCOMMERCIAL


def pmc_source(name: str, *, endpoint: str | None = None, sign: bool = False,
               requester_pays: bool = False, ca_file: str | os.PathLike[str] | None = None,
               proxy: Proxy | None = None, netrc_file: str | os.PathLike[str] | None = None,
               email: str | None = None) -> S3Source:
    """The S3 source a `pmc:` preset names (reached as the --s3-* options say; the bucket
    stays `pmc-oa-opendata` on another endpoint too); BadSource for any other `pmc:` name."""
    if name not in PMC_PRESETS:
        raise BadSource(f"unknown preset {name!r}: use one of {', '.join(PMC_PRESETS)}")
    prefix, narrow = PMC_PRESETS[name]
    source = S3Source.parse(f"s3://{PMC_BUCKET}/{prefix}", endpoint=endpoint, sign=sign,
                            requester_pays=requester_pays, ca_file=ca_file, proxy=proxy,
                            netrc_file=netrc_file, email=email)
    subset = name.removeprefix("pmc:")
    return replace(source, narrow=narrow,
                   select=LicenceRule(subset) if subset in _GROUPS else None)
