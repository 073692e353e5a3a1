#!/usr/bin/env python3
"""`recipe` inside the image: the bundle's runner on the base's own Python.

The runner's dependencies live in /opt/recipe-bundle/lib and go on this process's path only, so
the base's packages (miles, SGLang, Ray and their click/rich) are what every other process sees.
"""

import sys

sys.path[:0] = ["/opt/recipe-bundle", "/opt/recipe-bundle/lib"]

from runner.cli import main  # noqa: E402

main()
