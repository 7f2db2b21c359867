#!/usr/bin/env python3
"""Health check: Orthanc answers GET /system on its HTTP port (as orthancteam/orthanc's probe)."""

import sys
import urllib.request

try:
    urllib.request.urlopen("http://127.0.0.1:8042/system", timeout=4).read()
except Exception as exc:  # any failure is "not alive"
    print(exc)
    sys.exit(1)
