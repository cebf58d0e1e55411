"""Build of the optional compiled header walker (everything else is in pyproject.toml).

The extension is optional: without a C compiler ``pip install`` still succeeds and the crawl uses the
pure-Python walker (it says so in one log line). ``CURATION_WALKER_CFLAGS`` adds compiler flags, e.g.
``-fsanitize=address`` for the fuzz run of ``benchmarks/walker_fuzz.py``.
"""

import os
import shlex

from setuptools import Extension, setup

extra = shlex.split(os.environ.get("CURATION_WALKER_CFLAGS", ""))

setup(
    ext_modules=[
        Extension(
            "curation.crawler._walker",
            sources=["curation/crawler/_walker.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", *extra],
            extra_link_args=[f for f in extra if f.startswith("-fsanitize")],
            optional=True,
        )
    ]
)
