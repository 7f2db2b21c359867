# CI only (docker/ci/bases.sh): Python 3.11 from Debian bookworm's own packages, standing in for
# the official python:3.11-slim-bookworm. `python` names python3, as in the official image.
FROM arcade-ci/debian:bookworm
COPY ca-certificates/ /usr/local/share/ca-certificates/
# pip trusts the system bundle (which then holds the host's extra CAs), not its own certifi copy.
RUN printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
