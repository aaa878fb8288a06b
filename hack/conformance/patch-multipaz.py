#!/usr/bin/env python3
"""multipaz 0.101.0 (the version the reachable Maven Central serves in place of the pinned
0.98.0) dropped the UtopiaMovieTicket sample document type. Remove the suite's three uses of it
in its mdoc test-app helper (provisioning of a sample movie ticket for the wallet tests; no FAPI
module touches it). Idempotent. Usage: patch-multipaz.py SUITE_SRC_DIR"""
import re, sys
p = sys.argv[1] + "/src/main/kotlin/com/android/identity/testapp/TestAppUtils.kt"
s = open(p).read()
s = s.replace("import org.multipaz.documenttype.knowntypes.UtopiaMovieTicket\n", "")
s = re.sub(r",\s*UtopiaMovieTicket\.getDocumentType\(\)\s*\)", "\n    )", s)
s = re.sub(r"\n\s*provisionDocument\((?:(?!provisionDocument\().)*?UtopiaMovieTicket\.getDocumentType\(\).*?\n\s*\)",
           "", s, flags=re.S)
assert "UtopiaMovieTicket" not in s, "patch-multipaz: UtopiaMovieTicket still referenced"
open(p, "w").write(s)
