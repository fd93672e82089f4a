"""The one compiled part of microlens: tracestore._otlp, the receivers' protobuf decoder.

Optional: without a C compiler the build goes on without it and the receivers decode in
Python (tracestore/decode.py), correct but slower. bin/test and bin/microlens build it in
place (``python setup.py build_ext --inplace``); ``pip install .`` builds it into the wheel.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tracestore._otlp",
            ["tracestore/_otlp.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
