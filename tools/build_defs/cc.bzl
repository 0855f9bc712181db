"""Project macros for C++ targets."""

def postern_cc_test(name, srcs, deps = [], **kwargs):
    """A GoogleTest unit test beside the code it tests."""
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + ["//third_party:gtest_main"],
        **kwargs
    )

def postern_fuzz_test(name, srcs, deps = [], corpus = None, **kwargs):
    """A libFuzzer target (LLVMFuzzerTestOneInput).

    Under Bazel it links a replay driver and runs every file of `corpus` once,
    so the target builds and its seeds pass in every CI run. tools/fuzz.sh
    builds the same sources with clang's -fsanitize=fuzzer for real fuzzing.
    """
    data = []
    args = []
    if corpus:
        data = native.glob([corpus + "/**"])
        args = ["$(location %s)" % f for f in data]
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + ["//tools/fuzz:replay_main"],
        data = data,
        args = args,
        **kwargs
    )
