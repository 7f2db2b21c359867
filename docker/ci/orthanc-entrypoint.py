"""Orthanc's configuration from ORTHANC__* variables, as orthancteam/orthanc builds it, then Orthanc.

``ORTHANC__DICOM_AET=ORTHANC`` sets ``"DicomAet": "ORTHANC"``; ``__`` nests
(``ORTHANC__DICOM_WEB__ENABLE`` -> ``{"DicomWeb": {"Enable": ...}}``); a value that parses as JSON
is taken as JSON (numbers, booleans, lists, objects), any other as a string.
"""

import json
import os
import sys

CONFIG = "/tmp/orthanc.json"
config = {
    "Name": "Orthanc",
    "StorageDirectory": "/var/lib/orthanc/db",
    "IndexDirectory": "/var/lib/orthanc/db",
    "HttpPort": 8042,
    "DicomPort": 4242,
    "RemoteAccessAllowed": True,
    "AuthenticationEnabled": True,
}


def pascal(name: str) -> str:
    return "".join(word.capitalize() for word in name.split("_"))


for key, value in sorted(os.environ.items()):
    if not key.startswith("ORTHANC__"):
        continue
    *parents, leaf = [pascal(part) for part in key[len("ORTHANC__"):].split("__")]
    node = config
    for parent in parents:
        node = node.setdefault(parent, {})
    try:
        node[leaf] = json.loads(value)
    except ValueError:
        node[leaf] = value

with open(CONFIG, "w") as out:
    json.dump(config, out, indent=2)
sys.stdout.flush()
os.execv("/usr/sbin/Orthanc", ["Orthanc", *sys.argv[1:], CONFIG])
