from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "matching._book",
            sources=["matching/csrc/book.c", "matching/csrc/book_module.c"],
            depends=["matching/csrc/book.h"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Werror", "-std=c11"],
        )
    ]
)
