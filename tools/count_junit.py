#!/usr/bin/env python3
"""Sums test cases over the JUnit XML files Bazel leaves under bazel-testlogs.

Prints "passed failed skipped". GoogleTest binaries report each case; other
test targets (fuzz seed replays) appear as one case in the XML Bazel writes
for them. A target whose XML is missing or unreadable counts as one failure.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET


def main() -> None:
    passed = failed = skipped = 0
    for dirpath, _, files in os.walk(sys.argv[1], followlinks=True):
        # run_N_of_M folders are left by an earlier --runs_per_test run; the
        # plain test.xml beside them is the result of this run.
        if "test.log" not in files or re.fullmatch(r"run_\d+_of_\d+", os.path.basename(dirpath)):
            continue
        try:
            cases = list(ET.parse(os.path.join(dirpath, "test.xml")).getroot().iter("testcase"))
        except (OSError, ET.ParseError):
            cases = []
        if not cases:
            failed += 1
            continue
        for case in cases:
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None or case.get("result") == "skipped":
                skipped += 1
            else:
                passed += 1
    print(passed, failed, skipped)


if __name__ == "__main__":
    main()
