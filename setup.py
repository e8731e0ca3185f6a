"""The optional compiled kernels of the segmented codec (storage/_kernels.c), of the context
coder's decoder (storage/_context_kernels.c) and of its rANS streams (storage/_rans_kernels.c).

Everything else is declared in pyproject.toml. The extension is optional: without a C compiler
the install still succeeds and storage/kernels.py falls back to the numpy code, which decodes
the same bytes, only slower, and encodes the same bytes except that the context coder does not
try rANS streams (storage/rans.py).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("modelhub.storage._kernels",
                             ["storage/_kernels.c", "storage/_context_kernels.c", "storage/_rans_kernels.c"],
                             optional=True, extra_compile_args=["-O3"])])
