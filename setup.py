"""Build the optional C kernel of the box evaluation; everything else is in pyproject.toml.

The kernel is optional: without a C compiler tedloc installs anyway and the evaluation falls
back to the (slower, equally exact) OpenCV contour search.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tedloc.eval._boxkernel",
            sources=["src/tedloc/eval/_boxkernel.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
