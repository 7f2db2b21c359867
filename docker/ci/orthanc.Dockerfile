# CI only (docker/ci/bases.sh): Orthanc from Debian bookworm's package, standing in for
# orthancteam/orthanc: configured from ORTHANC__* variables the same way (ORTHANC__DICOM_AET ->
# "DicomAet", JSON values parsed), storage in /var/lib/orthanc/db, the same aliveness probe.
FROM arcade-ci/python:3.11-bookworm
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends orthanc \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/sbin/policy-rc.d \
 && install -d -o orthanc -g orthanc /var/lib/orthanc/db
COPY orthanc-entrypoint.py /usr/local/bin/orthanc-entrypoint.py
COPY test-aliveness.py /probes/test-aliveness.py
USER orthanc
VOLUME ["/var/lib/orthanc/db"]
EXPOSE 4242 8042
ENTRYPOINT ["python3", "/usr/local/bin/orthanc-entrypoint.py"]
