"""python -m pubmed_mirror"""

import sys

from .cli import main

sys.exit(main())
