"""Test certificates made with the openssl command: a CA, a server certificate for localhost /
127.0.0.1, client certificates signed by that CA and by a second, untrusted CA."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from arcade_pacs.bench.peers import run, tool


def _ok(args):
    out = run(args)
    assert out.returncode == 0, out.stdout + out.stderr


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _ok([tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return key, cert


def _leaf(folder: Path, name: str, ca: tuple[Path, Path], usage: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}{s}" for s in (".key", ".csr", ".pem", ".ext"))
    ext.write_text(f"basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n")
    _ok([tool("openssl"), "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"])
    _ok([tool("openssl"), "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)])
    return key, cert


def make_certificates(folder: Path) -> SimpleNamespace:
    """Everything a TLS test needs, as paths: ``ca``, ``server_key``/``server_cert``,
    ``client_key``/``client_cert`` (same CA), ``rogue_key``/``rogue_cert`` (another CA)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    other = _ca(folder, "rogue-ca")
    server = _leaf(folder, "server", ca, "serverAuth")
    client = _leaf(folder, "client", ca, "clientAuth")
    rogue = _leaf(folder, "rogue", other, "clientAuth")
    return SimpleNamespace(ca=ca[1], server_key=server[0], server_cert=server[1], client_key=client[0],
                           client_cert=client[1], rogue_key=rogue[0], rogue_cert=rogue[1])
