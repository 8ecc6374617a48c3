"""Builds the C extensions (PostgreSQL page checksums, block ids, heap page split); everything else is in
pyproject.toml."""

import platform

from setuptools import Extension, setup

flags = ["-O3", "-funroll-loops"]
if platform.machine() in ("x86_64", "AMD64"):
    flags.append("-msse4.1")  # lets the 32 lanes be computed with vector instructions

setup(ext_modules=[
    Extension("engine.postgres._pagecheck", ["engine/postgres/_pagecheck.c"],
              extra_compile_args=flags),
    Extension("engine.repository._blockhash", ["engine/repository/_blockhash.c"],
              extra_compile_args=["-O2"], libraries=["crypto"]),
    Extension("engine.repository._heapsplit", ["engine/repository/_heapsplit.c"],
              extra_compile_args=["-O2"]),
])
