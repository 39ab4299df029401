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
"""

from __future__ import annotations

import os
from dataclasses import replace

from ._errors import BadSource
from ._proxy import Proxy
from ._s3 import S3Source

__all__ = ["PMC_BUCKET", "PMC_PRESETS", "RETIRED_PRESETS", "pmc_source"]

PMC_BUCKET = "pmc-oa-opendata"

# name -> (the S3 prefix whose keys are named relative to it, the keys' narrowing below it)
PMC_PRESETS: dict[str, tuple[str, str]] = {
    "pmc:metadata": ("metadata/", ""),  # one JSON per article version: the dataset's index
    "pmc:articles": ("", "PMC"),  # every article-version prefix, as PMCxxx.N/NAME
}

# The names users know from the legacy layout: no prefix holds them any more, and a
# selection by each version's `license_code` is not built yet.
RETIRED_PRESETS = {
    "pmc:oa_comm": "commercial-use",
    "pmc:oa_noncomm": "non-commercial",
}


def pmc_source(name: str, *, endpoint: str | None = None, sign: bool = False,
               requester_pays: bool = False, ca_file: str | os.PathLike[str] | None = None,
               proxy: Proxy | None = None, netrc_file: str | os.PathLike[str] | None = None,
               email: str | None = None) -> S3Source:
    """The S3 source a `pmc:` preset names (reached as the --s3-* options say; the bucket
    stays `pmc-oa-opendata` on another endpoint too); BadSource for any other `pmc:` name,
    saying what to use instead of a retired one."""
    if name in RETIRED_PRESETS:
        raise BadSource(
            f"{name}: PMC retired the {name.removeprefix('pmc:')}/ prefix on 2026-04-13 (the "
            f"licence is now each article version's license_code); this tool cannot select "
            f"the {RETIRED_PRESETS[name]} articles yet: mirror pmc:articles (every article "
            f"version) or pmc:metadata (their licence codes)")
    if name not in PMC_PRESETS:
        raise BadSource(f"unknown preset {name!r}: use one of {', '.join(PMC_PRESETS)}")
    prefix, narrow = PMC_PRESETS[name]
    source = S3Source.parse(f"s3://{PMC_BUCKET}/{prefix}", endpoint=endpoint, sign=sign,
                            requester_pays=requester_pays, ca_file=ca_file, proxy=proxy,
                            netrc_file=netrc_file, email=email)
    return replace(source, narrow=narrow)
