#!/usr/bin/env python3
"""FerretDB 1.x (the MongoDB wire-compatible store used here) has no text indexes: creating one
fails with IndexNotFound and the suite's startup (Application.doPostConstruct ->
DBTestInfoService/DBTestPlanService.createIndexes) aborts. The two text indexes serve only the
web UI's free-text search of test and plan lists; the API the driver uses never queries them.
Make their creation log a warning instead of failing. Idempotent. Usage: patch-text-index.py SRC"""
import sys
base = sys.argv[1] + "/src/main/java/net/openid/conformance/info/"
old = "\t\tcollection.createIndex(new Document(sortedMap));\n"
new = ("\t\ttry {\n\t\t\tcollection.createIndex(new Document(sortedMap));\n"
       "\t\t} catch (com.mongodb.MongoCommandException e) {\n"
       "\t\t\torg.slf4j.LoggerFactory.getLogger(getClass()).warn(\"text index not created (the store has no text indexes): {}\", e.getErrorMessage());\n"
       "\t\t}\n")
for name in ("DBTestInfoService.java", "DBTestPlanService.java"):
    p = base + name
    s = open(p).read()
    if new in s:
        continue
    assert s.count(old) == 1, f"patch-text-index: unexpected {name}"
    open(p, "w").write(s.replace(old, new))
