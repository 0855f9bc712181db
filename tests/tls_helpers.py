"""TLS helpers for integration tests: throwaway client certificates and
fingerprints made with the openssl command line, and client contexts."""
import os
import ssl
import subprocess


def make_client_cert(directory, name):
    """An ECDSA P-256 self-signed certificate; returns (cert, key, sha256 hex)."""
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-subj", f"/CN={name}", "-days", "2"],
        check=True, capture_output=True)
    return cert, key, fingerprint(cert)


def fingerprint(cert):
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def spki_fingerprint(cert):
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, check=True,
                         capture_output=True).stdout
    import hashlib
    return hashlib.sha256(der).hexdigest()


def client_context(cert=None, key=None, maximum=None, minimum=None):
    """A client context that does not verify the server (tests use the
    node's self-signed default certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if maximum:
        ctx.maximum_version = maximum
    if minimum:
        ctx.minimum_version = minimum
    return ctx
