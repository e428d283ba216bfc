"""Build the Cython kernels in ``src_ext/`` as extension modules of ``hnm``.

Everything else about the package lives in ``pyproject.toml``.

Environment variables
---------------------
HNM_NO_OPENMP=1
    Build without OpenMP even if the compiler supports it (kernels then run serially).
HNM_DEBUG=1
    Build with Cython bounds and wraparound checks on and without optimisation, so an
    out-of-bounds access raises instead of reading garbage (used by the debug CI job).
"""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
DEBUG = os.environ.get("HNM_DEBUG", "0") not in ("", "0")
NO_OPENMP = os.environ.get("HNM_NO_OPENMP", "0") not in ("", "0")


def _openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or empty lists if unavailable."""
    if NO_OPENMP:
        return [], []
    if sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    code = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    for cflags, lflags in candidates:
        compiler = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp_check.c")
            with open(src, "w") as f:
                f.write(code)
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(
                    objs, "omp_check", output_dir=tmp, extra_postargs=lflags
                )
            except Exception:
                continue
        return cflags, lflags
    print("hnm: compiler has no OpenMP, building serial kernels", file=sys.stderr)
    return [], []


def _extensions():
    omp_c, omp_l = _openmp_flags()
    if sys.platform == "win32":
        opt = ["/Od"] if DEBUG else ["/O2"]
    else:
        opt = ["-O0", "-g"] if DEBUG else ["-O3"]
    exts = []
    for pyx in sorted((HERE / "src_ext").glob("*.pyx")):
        exts.append(
            Extension(
                f"hnm.{pyx.stem}",
                [str(pyx.relative_to(HERE))],
                include_dirs=[np.get_include(), "src_ext"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=opt + omp_c,
                extra_link_args=omp_l,
            )
        )
    directives = {
        "language_level": "3",
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": not DEBUG,
        "embedsignature": True,
    }
    return cythonize(
        exts,
        compiler_directives=directives,
        include_path=["src_ext"],
        compile_time_env={"HNM_DEBUG": DEBUG},
    )


setup(ext_modules=_extensions())
