#!/usr/bin/env python3
"""atls_verify: an independent verifier of atls evidence, version 1.

Written from interop/SPEC.md alone, to show that the format can be
implemented without the Go code: it decodes the id-pe-cmw extension of a
certificate, recomputes REPORT_DATA (in batch mode through the certificate's
Merkle inclusion proof, SPEC section 4.1), and checks an AMD SEV-SNP attestation
report, its VCEK -> ASK -> ARK chain against pinned roots, its signature and
a small policy. It needs Python 3.9+ and the 'cryptography' package (38 or
later; Debian's python3-cryptography).

Usage:

  atls_verify.py --roots ROOTS.pem (--cert CERT | --connect HOST:PORT |
                  --bound-frame FRAME --exporter HEX [--peer-cert CERT])
                 --role server|client [--nonce HEX] [--mode-allow-static]
                 [--max-age SECONDS] (--measurement HEX ... | --any-measurement)
                 [--now RFC3339] [--simulated]

--role is the role the peer must have attested as: "server" when checking
a server's certificate, "client" for a client's. --nonce is the nonce this
side sent (64 hex digits); nonce-bound evidence (mode nonce or batch)
needs it; without it, only static evidence can pass, and only with
--mode-allow-static. With --connect the verifier makes a TLS 1.3
connection itself, offers a nonce in ALPN (SPEC section 5; --nonce chooses
it, otherwise it is random) and checks the certificate the server sends.

With --bound-frame it checks a recorded session-bound evidence frame (SPEC
section 9): --exporter is the exporter of the connection for the sender's
role label (the receiver's own TLS stack computes it; a recorded frame
needs it as an input), --peer-cert the certificate the sender presented,
--role the sender's role, and --nonce the nonce of a re-attestation
request (none for the first exchange).

On success it prints the verified claims as JSON and exits 0. On failure it
prints one line, "FAIL <check>: <reason>", and exits 1; the check names are
those of the Go implementation. Usage and configuration errors exit 2.
"""

import argparse
import base64
import calendar
import datetime
import hashlib
import hmac
import json
import re
import secrets
import socket
import ssl
import struct
import sys

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID
except ImportError as exc:  # pragma: no cover - reported to the caller
    sys.stderr.write("atls_verify: the 'cryptography' package is required: %s\n" % exc)
    sys.exit(2)

# --- Constants of SPEC.md -------------------------------------------------

OID_CMW = "1.3.6.1.5.5.7.1.35"
MAX_EXTENSION = 65536
MAX_RECORD = 32768
MAX_RECORDS = 8
COLLECTION_TYPE_KEY = "__cmwc_t"
SNP_COLLECTION_TYPE = "tag:confidential-go.github.io,2026:atls/snp/v1"
BINDING_LABEL, BINDING_MT = "binding", "application/vnd.atls.binding+json"
REPORT_LABEL, REPORT_MT = "snp-report", "application/vnd.atls.snp-report"
VCEK_LABEL, VCEK_MT = "vcek", "application/pkix-cert"
CRL_LABEL, CRL_MT = "ask-crl", "application/pkix-crl"
BATCH_LABEL, BATCH_MT = "batch-proof", "application/vnd.atls.batch-proof"
MAX_CERT, MAX_CRL = 8192, 16384
SNP_MEDIA_TYPES = {BINDING_LABEL: BINDING_MT, REPORT_LABEL: REPORT_MT, VCEK_LABEL: VCEK_MT, CRL_LABEL: CRL_MT,
                   BATCH_LABEL: BATCH_MT}

BINDING_TAG = b"ATLS-SNP-V1"
ROLE_BYTE = {"server": b"S", "client": b"C"}
MODE_BYTE = {"static": b"\x00", "nonce": b"\x01", "batch": b"\x02", "bound": b"\x03"}
NONCE_MODES = ("nonce", "batch")

# Session-bound evidence (SPEC section 9).
BOUND_TAG = b"ATLS-SNP-V1-BOUND"
FRAME_EVIDENCE, FRAME_NO_EVIDENCE, FRAME_REATTEST = 0x01, 0x02, 0x03
MAX_FRAME = 98304

# Batched evidence (SPEC section 4.1).
BATCH_TAG = b"ATLS-SNP-V1-BATCH"
BATCH_PROOF_VERSION = 1
MAX_BATCH_SIZE = 1 << 16
NONCE_PREFIX = "atls-nonce-v1:"
DEFAULT_MAX_AGE = 2 * 3600

REPORT_SIZE = 0x4A0
SIGNATURE_OFFSET = 0x2A0
RS_SIZE = 72
REPORT_VERSIONS = (2, 3, 5)

PRODUCT_LINES = ("Milan", "Genoa", "Turin")

# Byte position of each SPL in a TCB_VERSION (little-endian u64), per
# product line (SPEC section 6.2); the other bytes are reserved.
TCB_LAYOUT = {
    "Milan": {"bl_spl": 0, "tee_spl": 1, "snp_spl": 6, "ucode_spl": 7},
    "Genoa": {"bl_spl": 0, "tee_spl": 1, "snp_spl": 6, "ucode_spl": 7},
    "Turin": {"fmc_spl": 0, "bl_spl": 1, "tee_spl": 2, "snp_spl": 3, "ucode_spl": 7},
}

# Default minimum TCB per product line (the Go library's BaselineTCB), by
# SPL name.
BASELINE_TCB = {
    "Milan": {"bl_spl": 3, "tee_spl": 0, "snp_spl": 8, "ucode_spl": 115},
    "Genoa": {"bl_spl": 10, "tee_spl": 0, "snp_spl": 23, "ucode_spl": 84},
    "Turin": {"fmc_spl": 0, "bl_spl": 1, "tee_spl": 0, "snp_spl": 2, "ucode_spl": 71},
}

# Size of the VCEK's hwID: the whole CHIP_ID before Turin; from Turin on
# 8 bytes, and CHIP_ID is those 8 bytes followed by 56 zero bytes.
HWID_SIZE = {"Milan": 64, "Genoa": 64, "Turin": 8}

# AMD KDS certificate extensions (AMD document 57230).
AMD_ARC = "1.3.6.1.4.1.3704.1."
KDS = {
    "1.3.6.1.4.1.3704.1.1": "struct_version",
    "1.3.6.1.4.1.3704.1.2": "product_name",
    "1.3.6.1.4.1.3704.1.3.1": "bl_spl",
    "1.3.6.1.4.1.3704.1.3.2": "tee_spl",
    "1.3.6.1.4.1.3704.1.3.3": "snp_spl",
    "1.3.6.1.4.1.3704.1.3.4": "spl4",
    "1.3.6.1.4.1.3704.1.3.5": "spl5",
    "1.3.6.1.4.1.3704.1.3.6": "spl6",
    "1.3.6.1.4.1.3704.1.3.7": "spl7",
    "1.3.6.1.4.1.3704.1.3.8": "ucode_spl",
    "1.3.6.1.4.1.3704.1.3.9": "fmc_spl",
    "1.3.6.1.4.1.3704.1.4": "hwid",
    "1.3.6.1.4.1.3704.1.5": "csp_id",
}
OID_AKI = "2.5.29.35"

OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"

B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
LABEL = re.compile(r"[a-z0-9-]{1,64}\Z")
RESTRICTED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&\-^_.+]{0,126}\Z")


class Fail(Exception):
    """A failed check, named as in the Go implementation."""

    def __init__(self, check, reason):
        super().__init__("%s: %s" % (check, reason))
        self.check = check
        self.reason = reason


class ConfigError(Exception):
    """Unusable local configuration (roots, flags)."""


# --- Strict DER ------------------------------------------------------------

def der_tlv(buf, pos=0):
    """Reads one DER element at pos; returns (tag, content_start, end).

    Only low tag numbers and definite, minimal lengths are accepted."""
    if pos + 2 > len(buf):
        raise ValueError("truncated DER element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ValueError("indefinite length")
    else:
        n = first & 0x7F
        if n > 4 or pos + n > len(buf):
            raise ValueError("bad length")
        if buf[pos] == 0:
            raise ValueError("non-minimal length")
        length = int.from_bytes(buf[pos:pos + n], "big")
        if length < 0x80:
            raise ValueError("non-minimal length")
        pos += n
    if pos + length > len(buf):
        raise ValueError("truncated DER element")
    return tag, pos, pos + length


def der_children(buf, start, end):
    """Splits the content buf[start:end] of a constructed element."""
    out = []
    pos = start
    while pos < end:
        tag, s, e = der_tlv(buf[:end], pos)
        out.append((tag, s, e, pos))
        pos = e
    return out


def der_only(buf, want_tag):
    """The content of buf, which must be exactly one element of want_tag."""
    tag, s, e = der_tlv(buf)
    if tag != want_tag:
        raise ValueError("tag 0x%02x, want 0x%02x" % (tag, want_tag))
    if e != len(buf):
        raise ValueError("trailing data after DER element")
    return buf[s:e]


def der_oid(content):
    if not content or content[-1] & 0x80:
        raise ValueError("bad OID")
    arcs, v = [], 0
    for b in content:
        if v == 0 and b == 0x80:
            raise ValueError("non-minimal OID arc")
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(v)
            v = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def der_uint8(buf):
    """A DER INTEGER 0..255 (minimal encoding), nothing after it."""
    c = der_only(buf, 0x02)
    if not c or (len(c) > 1 and ((c[0] == 0 and c[1] < 0x80) or (c[0] == 0xFF and c[1] >= 0x80))):
        raise ValueError("non-minimal INTEGER")
    v = int.from_bytes(c, "big", signed=True)
    if not 0 <= v <= 255:
        raise ValueError("INTEGER %d is not 0-255" % v)
    return v


def der_ia5(buf):
    c = der_only(buf, 0x16)
    if any(b > 0x7F for b in c):
        raise ValueError("IA5String with non-ASCII bytes")
    return c.decode("ascii")


def algorithm(buf, start, end):
    """Parses an AlgorithmIdentifier; returns (oid, params or None)."""
    kids = der_children(buf, start, end)
    if not kids or kids[0][0] != 0x06 or len(kids) > 2:
        raise ValueError("bad AlgorithmIdentifier")
    oid = der_oid(buf[kids[0][1]:kids[0][2]])
    params = buf[kids[1][3]:kids[1][2]] if len(kids) == 2 else None
    return oid, params


def hash_is_sha384(buf, start, end):
    oid, params = algorithm(buf, start, end)
    return oid == OID_SHA384 and params in (None, b"\x05\x00")


def check_pss_sha384(alg_der):
    """Accepts exactly RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte
    salt: the algorithm of AMD's (and the simulator's) ARK, ASK and VCEK
    certificates and CRLs."""
    tag, s, e = der_tlv(alg_der)
    oid, params = algorithm(alg_der, s, e)
    if oid != OID_RSASSA_PSS or params is None:
        raise ValueError("signature algorithm %s is not RSASSA-PSS" % oid)
    ptag, ps, pe = der_tlv(params)
    if ptag != 0x30:
        raise ValueError("bad RSASSA-PSS parameters")
    seen = {}
    for tag, cs, ce, _ in der_children(params, ps, pe):
        seen[tag] = (cs, ce)
    if set(seen) - {0xA0, 0xA1, 0xA2, 0xA3} or 0xA0 not in seen or 0xA1 not in seen or 0xA2 not in seen:
        raise ValueError("RSASSA-PSS parameters are not SHA-384/MGF1-SHA-384/salt 48")
    t, s, e = der_tlv(params, seen[0xA0][0])
    if t != 0x30 or e != seen[0xA0][1] or not hash_is_sha384(params, s, e):
        raise ValueError("PSS hash is not SHA-384")
    t, s, e = der_tlv(params, seen[0xA1][0])
    if t != 0x30 or e != seen[0xA1][1]:
        raise ValueError("bad PSS mask generation function")
    mgf_oid, mgf_params = algorithm(params, s, e)
    if mgf_oid != OID_MGF1 or mgf_params is None:
        raise ValueError("PSS mask generation function is not MGF1")
    t, s, e = der_tlv(mgf_params)
    if t != 0x30 or e != len(mgf_params) or not hash_is_sha384(mgf_params, s, e):
        raise ValueError("MGF1 hash is not SHA-384")
    if der_uint8(params[seen[0xA2][0]:seen[0xA2][1]]) != 48:
        raise ValueError("PSS salt length is not 48")
    if 0xA3 in seen and der_uint8(params[seen[0xA3][0]:seen[0xA3][1]]) != 1:
        raise ValueError("PSS trailer field is not 1")


def verify_signed(der, issuer_key):
    """Verifies a signed X.509 object (certificate or CRL: SEQUENCE of the
    signed data, its AlgorithmIdentifier and a BIT STRING) with the AMD
    RSASSA-PSS/SHA-384 profile."""
    tag, s, e = der_tlv(der)
    if tag != 0x30 or e != len(der):
        raise ValueError("not a DER SEQUENCE")
    kids = der_children(der, s, e)
    if len(kids) != 3 or kids[0][0] != 0x30 or kids[1][0] != 0x30 or kids[2][0] != 0x03:
        raise ValueError("not a signed object")
    tbs = der[kids[0][3]:kids[0][2]]
    check_pss_sha384(der[kids[1][3]:kids[1][2]])
    bits = der[kids[2][1]:kids[2][2]]
    if not bits or bits[0] != 0:
        raise ValueError("signature BIT STRING has unused bits")
    if not isinstance(issuer_key, rsa.RSAPublicKey):
        raise ValueError("issuer key is not RSA")
    try:
        issuer_key.verify(bits[1:], tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
    except InvalidSignature:
        raise ValueError("RSASSA-PSS signature does not verify") from None


def raw_spki(cert):
    """The DER SubjectPublicKeyInfo exactly as encoded in the certificate."""
    tbs = cert.tbs_certificate_bytes
    tag, s, e = der_tlv(tbs)
    kids = der_children(tbs, s, e)
    i = 1 if kids and kids[0][0] == 0xA0 else 0  # optional [0] version
    # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    spki = kids[i + 5]
    if spki[0] != 0x30:
        raise ValueError("no SubjectPublicKeyInfo")
    return tbs[spki[3]:spki[2]]


# --- Times -----------------------------------------------------------------

UTC = datetime.timezone.utc


def utc(dt):
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def unix(dt):
    return calendar.timegm(utc(dt).utctimetuple())


def not_before(obj):
    """A certificate's notBefore (or a CRL's thisUpdate) as an aware UTC
    datetime, whatever the version of cryptography."""
    if isinstance(obj, x509.Certificate):
        v = getattr(obj, "not_valid_before_utc", None)
        return utc(v if v is not None else obj.not_valid_before)
    v = getattr(obj, "last_update_utc", None)
    return utc(v if v is not None else obj.last_update)


def not_after(obj):
    """A certificate's notAfter (or a CRL's nextUpdate, None if absent)."""
    if isinstance(obj, x509.Certificate):
        v = getattr(obj, "not_valid_after_utc", None)
        return utc(v if v is not None else obj.not_valid_after)
    v = obj.next_update_utc if hasattr(obj, "next_update_utc") else obj.next_update
    return None if v is None else utc(v)


def rfc3339(dt):
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    t = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    dt = datetime.datetime.fromisoformat(t)
    if dt.tzinfo is None:
        raise ValueError("time %r has no time zone" % s)
    return utc(dt)


# --- SPEC section 2: the extension -----------------------------------------

def extract_extension(cert):
    try:
        exts = list(cert.extensions)
    except x509.DuplicateExtension as exc:
        if exc.oid.dotted_string == OID_CMW:
            raise Fail("evidence.extension", "duplicate id-pe-cmw extension") from None
        raise Fail("tls.certificate", "certificate has a duplicate extension %s" % exc.oid.dotted_string) from None
    except ValueError as exc:
        raise Fail("tls.certificate", "cannot parse the certificate's extensions: %s" % exc) from None
    found = [e for e in exts if e.oid.dotted_string == OID_CMW]
    if not found:
        raise Fail("evidence.extension", "not attested: the certificate has no id-pe-cmw extension")
    ext = found[0]
    if ext.critical:
        raise Fail("evidence.extension", "the id-pe-cmw extension must not be critical")
    value = ext.value.value
    if len(value) > MAX_EXTENSION:
        raise Fail("evidence.extension", "extension of %d bytes exceeds %d" % (len(value), MAX_EXTENSION))
    try:
        return der_only(value, 0x0C)
    except ValueError as exc:
        raise Fail("evidence.extension", "extension value is not a single DER UTF8String (%s); the CBOR choice is not supported" % exc) from None


# --- SPEC section 3: the collection ----------------------------------------

class JSONObject(list):
    """A JSON object as the list of its members, in order, duplicates kept."""


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def load_json(data):
    """Parses JSON from UTF-8 bytes, keeping objects as JSONObject."""
    text = data.decode("utf-8")  # strict: invalid UTF-8 and surrogates fail
    if text.startswith("\ufeff"):
        raise ValueError("byte-order mark")
    return json.loads(text, object_pairs_hook=JSONObject, parse_constant=_reject_constant)


def check_collection_type(t):
    if not 1 <= len(t) <= 128 or any(not 0x21 <= ord(c) <= 0x7E or c in '"\\<>' for c in t):
        raise Fail("evidence.collection", "collection type %r is not 1-128 printable ASCII characters other than \" \\ < >" % t)


def check_label(label):
    if not LABEL.match(label) or label.startswith("__"):
        raise Fail("evidence.record", "invalid label %r (want [a-z0-9-], 1-64 characters, not starting with __)" % label)


def check_media_type(label, mt):
    parts = mt.split("/")
    if len(mt) > 128 or len(parts) != 2 or not all(RESTRICTED_NAME.match(p) for p in parts):
        raise Fail("evidence.record", "record %r: media type %r is not type/subtype of RFC 6838 restricted names" % (label, mt))


def decode_value(label, s):
    if len(s) * 6 // 8 > MAX_RECORD:
        raise Fail("evidence.collection", "record %r: value exceeds %d bytes" % (label, MAX_RECORD))
    if not B64URL.match(s) or len(s) % 4 == 1:
        raise Fail("evidence.collection", "record %r: value is not unpadded base64url" % label)
    v = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if base64.urlsafe_b64encode(v).decode("ascii").rstrip("=") != s:
        raise Fail("evidence.collection", "record %r: value is not canonical base64url (non-zero trailing bits)" % label)
    if not v:
        raise Fail("evidence.collection", "record %r: empty value" % label)
    return v


def parse_collection(data):
    """Decodes a JSON CMW collection; returns (type, {label: (media type, value)})."""
    if len(data) > MAX_EXTENSION:
        raise Fail("evidence.collection", "collection of %d bytes exceeds %d" % (len(data), MAX_EXTENSION))
    try:
        top = load_json(data)
    except (ValueError, RecursionError) as exc:
        raise Fail("evidence.collection", "not a JSON collection: %s" % exc) from None
    if not isinstance(top, JSONObject):
        raise Fail("evidence.collection", "collection is not a JSON object")
    ctype, records, seen = None, {}, set()
    for key, val in top:
        if key in seen:
            raise Fail("evidence.collection", "duplicate member %r" % key)
        seen.add(key)
        if key == COLLECTION_TYPE_KEY:
            if not isinstance(val, str):
                raise Fail("evidence.collection", "collection type must be a string")
            check_collection_type(val)
            ctype = val
            continue
        check_label(key)
        if len(records) == MAX_RECORDS:
            raise Fail("evidence.collection", "more than %d records" % MAX_RECORDS)
        if not isinstance(val, list) or isinstance(val, JSONObject):
            raise Fail("evidence.collection", "record %r is not a [media-type, value] array" % key)
        if len(val) < 2 or not all(isinstance(x, str) for x in val[:2]):
            raise Fail("evidence.collection", "record %r is not a [media-type, value] array of strings" % key)
        if len(val) > 2:
            raise Fail("evidence.collection", "record %r has more than two members" % key)
        check_media_type(key, val[0])
        records[key] = (val[0], decode_value(key, val[1]))
    if ctype is None:
        raise Fail("evidence.collection", "missing %r member" % COLLECTION_TYPE_KEY)
    if not records:
        raise Fail("evidence.collection", "collection has no records")
    return ctype, records


def record(records, label, required=True):
    if label not in records:
        if required:
            raise Fail("evidence.record", "missing record %r" % label)
        return None
    mt, value = records[label]
    if mt != SNP_MEDIA_TYPES[label]:
        raise Fail("evidence.record", "record %r has media type %r, want %r" % (label, mt, SNP_MEDIA_TYPES[label]))
    return value


def parse_binding(records):
    """The binding record: exactly version 1, role and mode."""
    raw = record(records, BINDING_LABEL)
    try:
        obj = load_json(raw)
    except (ValueError, RecursionError) as exc:
        raise Fail("evidence.binding", "binding record is not JSON: %s" % exc) from None
    if not isinstance(obj, JSONObject):
        raise Fail("evidence.binding", "binding record is not a JSON object")
    seen, role, mode = set(), None, None
    for key, val in obj:
        if key in seen:
            raise Fail("evidence.binding", "duplicate member %r" % key)
        seen.add(key)
        if key == "version":
            # The JSON number 1: not 1.0, not true.
            if type(val) is not int or val != 1:
                raise Fail("evidence.binding", "unknown binding version %r" % (val,))
        elif key == "role":
            if not isinstance(val, str) or val not in ROLE_BYTE:
                raise Fail("evidence.binding", "unknown role %r" % (val,))
            role = val
        elif key == "mode":
            if not isinstance(val, str) or val not in MODE_BYTE:
                raise Fail("evidence.binding", "unknown mode %r" % (val,))
            mode = val
        else:
            raise Fail("evidence.binding", "unknown member %r" % key)
    if len(seen) != 3:
        raise Fail("evidence.binding", "binding record needs version, role and mode")
    return role, mode


def parse_snp_evidence(ctype, records):
    """The SEV-SNP collection: its type, labels and record sizes."""
    if ctype != SNP_COLLECTION_TYPE:
        raise Fail("snp.evidence", "collection type %r is not %r" % (ctype, SNP_COLLECTION_TYPE))
    for label in records:
        if label not in SNP_MEDIA_TYPES:
            raise Fail("snp.evidence", "unknown record %r" % label)
    report = record(records, REPORT_LABEL)
    if len(report) != REPORT_SIZE:
        raise Fail("snp.evidence", "report is %d bytes, want %d" % (len(report), REPORT_SIZE))
    vcek = record(records, VCEK_LABEL)
    if len(vcek) > MAX_CERT:
        raise Fail("snp.evidence", "certificate of %d bytes exceeds %d" % (len(vcek), MAX_CERT))
    crl = record(records, CRL_LABEL, required=False)
    if crl is not None and len(crl) > MAX_CRL:
        raise Fail("snp.evidence", "CRL of %d bytes exceeds %d" % (len(crl), MAX_CRL))
    return report, vcek, crl


def encode_collection(ctype, records):
    """The deterministic encoding of SPEC section 3 (for the evidence digest)."""
    parts = ['{"%s":"%s"' % (COLLECTION_TYPE_KEY, ctype)]
    for label in sorted(records, key=lambda s: s.encode("utf-8")):
        mt, value = records[label]
        parts.append(',"%s":["%s","%s"]' % (label, mt, base64.urlsafe_b64encode(value).decode("ascii").rstrip("=")))
    parts.append("}")
    return "".join(parts).encode("utf-8")


# --- SPEC section 4: REPORT_DATA -------------------------------------------

def report_data(spki_der, role, mode, nonce, not_before, not_after):
    """The section-4 derivation; in batch mode, the certificate's leaf."""
    if not_before < 0 or not_after < 0 or not_after < not_before:
        raise Fail("binding", "invalid validity [%d, %d]" % (not_before, not_after))
    if mode in NONCE_MODES:
        if nonce is None or nonce == bytes(32):
            raise Fail("binding", "%s mode needs a non-zero nonce" % mode)
        freshness = nonce
    else:
        freshness = bytes(32)
    preimage = (BINDING_TAG + ROLE_BYTE[role] + MODE_BYTE[mode] + hashlib.sha256(spki_der).digest()
                + freshness + struct.pack(">QQ", not_before, not_after))
    assert len(preimage) == 93
    return hashlib.sha512(preimage).digest()


# --- SPEC section 4.1: batched evidence -------------------------------------

def leaf_hash(leaf):
    """RFC 9162 leaf hash of a 64-byte leaf value."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left, right):
    """RFC 9162 interior node hash."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def batch_path_length(index, size):
    """The number of siblings the algorithm of RFC 9162 section 2.1.3.2
    consumes for a leaf index in a tree of size leaves (index < size)."""
    fn, sn, k = index, size - 1, 0
    while sn > 0:
        if fn & 1 or fn == sn:
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
        k += 1
    return k


def parse_batch_proof(value):
    """Decodes a batch-proof record strictly: returns (index, size, path)."""
    if len(value) < 9 or (len(value) - 9) % 32:
        raise Fail("batch.proof", "proof record of %d bytes is not 9 + 32k bytes" % len(value))
    if value[0] != BATCH_PROOF_VERSION:
        raise Fail("batch.proof", "unknown proof version %d (want %d)" % (value[0], BATCH_PROOF_VERSION))
    index, size = struct.unpack_from(">II", value, 1)
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise Fail("batch.size", "tree size %d is not between 1 and %d" % (size, MAX_BATCH_SIZE))
    if index >= size:
        raise Fail("batch.index", "leaf index %d is not below the tree size %d" % (index, size))
    k = (len(value) - 9) // 32
    want = batch_path_length(index, size)
    if k != want:
        raise Fail("batch.path", "path of %d siblings for leaf %d of %d, want %d" % (k, index, size, want))
    return index, size, [value[9 + 32 * i:9 + 32 * (i + 1)] for i in range(k)]


def batch_root(index, size, path, leaf):
    """The root that the inclusion proof (index, size, path) gives for a
    leaf value: RFC 9162 section 2.1.3.2. The path length must already be
    the one batch_path_length gives."""
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            raise Fail("batch.path", "path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Fail("batch.path", "path too short")
    return r


def batch_report_data(size, root):
    """The REPORT_DATA of a batch report: SHA-512 of the batch label, the
    tree size (8 bytes, big-endian) and the root."""
    preimage = BATCH_TAG + struct.pack(">Q", size) + root
    assert len(preimage) == 57
    return hashlib.sha512(preimage).digest()


def expected_report_data(records, mode, leaf):
    """Step 6 after the section-4 value: in batch mode the batch
    REPORT_DATA of the root the proof record gives for the leaf; otherwise
    the value itself, with no proof record allowed."""
    proof = records.get(BATCH_LABEL)
    if mode != "batch":
        if proof is not None:
            raise Fail("batch.proof", "a batch proof in %s-mode evidence" % mode)
        return leaf
    if proof is None:
        raise Fail("batch.proof", "batch-mode evidence without a %r record" % BATCH_LABEL)
    mt, value = proof
    if mt != BATCH_MT:
        raise Fail("batch.proof", "record %r has media type %r, want %r" % (BATCH_LABEL, mt, BATCH_MT))
    index, size, path = parse_batch_proof(value)
    return batch_report_data(size, batch_root(index, size, path, leaf))


# --- The attestation report ------------------------------------------------

def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def u64(b, off):
    return struct.unpack_from("<Q", b, off)[0]


def nonzero(b, lo, hi):
    return any(b[lo:hi])


def check_report_structure(r):
    """Step 7: size, version, signature algorithm, reserved fields, signer."""
    if len(r) != REPORT_SIZE:
        raise Fail("snp.report.size", "report is %d bytes, want %d" % (len(r), REPORT_SIZE))
    version = u32(r, 0x00)
    if version not in REPORT_VERSIONS:
        raise Fail("snp.report.version", "report version %d is not accepted (%s)" % (version, REPORT_VERSIONS))
    if u32(r, 0x34) != 1:
        raise Fail("snp.report.signature_algo", "signature algorithm %d is not 1 (ECDSA P-384 with SHA-384)" % u32(r, 0x34))
    bad = lambda why: Fail("snp.report.format", why)  # noqa: E731
    policy = u64(r, 0x08)
    if not policy & (1 << 17):
        raise bad("guest policy bit 17 is reserved and must be 1")
    if policy >> 26:
        raise bad("guest policy has reserved bits 26-63 set")
    signer_info = u32(r, 0x48)
    if signer_info >> 5:
        raise bad("SIGNER_INFO has reserved bits set")
    signing_key = (signer_info >> 2) & 7
    if 2 <= signing_key <= 6:
        raise bad("SIGNING_KEY %d is reserved" % signing_key)
    reserved = [(0x4C, 0x50), (0x18B if version >= 3 else 0x188, 0x1A0), (0x1EB, 0x1EC), (0x1EF, 0x1F0),
                (0x208, SIGNATURE_OFFSET), (SIGNATURE_OFFSET + 2 * RS_SIZE, REPORT_SIZE)]
    if version < 5:
        reserved.append((0x1F8, 0x208))  # the mitigation vectors of version 5
    for lo, hi in reserved:
        if nonzero(r, lo, hi):
            raise bad("reserved bytes 0x%x-0x%x are not zero" % (lo, hi - 1))
    if version >= 3 and r[0x18A] > 0x0F:
        raise bad("CPUID stepping 0x%02x does not fit 4 bits" % r[0x18A])
    if signing_key not in (0, 1):
        raise Fail("snp.report.signer", "the report is not signed (SIGNING_KEY %d)" % signing_key)
    return version, "VCEK" if signing_key == 0 else "VLEK"


def parse_signer_cert(der, signer):
    """The VCEK (or VLEK) certificate and its AMD KDS extensions, read with
    the profile of the product line its productName names (SPEC section
    6.1). Returns (cert, fields); fields["tcb"] is the TCB_VERSION the
    certificate is for, in that product line's layout (section 6.2)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        exts = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise Fail("snp.vcek.parse", "cannot parse the %s certificate: %s" % (signer, exc)) from None
    raw = {}
    for e in exts:
        oid = e.oid.dotted_string
        if oid == OID_AKI:
            continue
        if oid not in KDS:
            why = "which this verifier cannot read (a newer certificate profile?)" if oid.startswith(AMD_ARC) else "which AMD certificates do not carry"
            raise Fail("snp.vcek.extensions", "the %s certificate carries extension %s, %s" % (signer, oid, why))
        raw[KDS[oid]] = e.value.value
    bad = lambda why: Fail("snp.vcek.extensions", "the certificate does not carry valid AMD %s extensions: %s" % (signer, why))  # noqa: E731

    def uint8(name, required=True):
        if name not in raw:
            if required:
                raise ValueError("missing %s" % name)
            return 0
        return der_uint8(raw[name])

    fields = {}
    try:
        fields["struct_version"] = uint8("struct_version")
        if "product_name" not in raw:
            raise ValueError("missing product_name")
        fields["product_name"] = der_ia5(raw["product_name"])
    except ValueError as exc:
        raise bad(exc) from None
    line = fields["product_name"].split("-", 1)[0]
    if line not in PRODUCT_LINES:
        raise Fail("snp.vcek.product", "the %s certificate is for product %r, which is no product line this verifier knows (Milan, Genoa, Turin)"
                   % (signer, fields["product_name"]))
    fields["line"] = line
    layout = TCB_LAYOUT[line]
    try:
        for name in ("bl_spl", "tee_spl", "snp_spl", "ucode_spl"):
            fields[name] = uint8(name)
        if "fmc_spl" in layout:
            fields["fmc_spl"] = uint8("fmc_spl")
        elif "fmc_spl" in raw:
            raise ValueError("a %s certificate carries fmcSPL, which only Turin and later have" % line)
        if line != "Turin":
            # The Milan and Genoa KDS profile: every SPL but ucodeSPL is 0-127.
            for name in ("bl_spl", "tee_spl", "snp_spl"):
                if fields[name] > 127:
                    raise ValueError("%s %d exceeds 127" % (name, fields[name]))
        for name in ("spl4", "spl5", "spl6", "spl7"):
            if uint8(name, required=False) != 0:
                raise ValueError("reserved SPL extension %s is not 0" % name)
        if "hwid" in raw:
            h, size = raw["hwid"], HWID_SIZE[line]
            fields["hwid"] = h if len(h) == size else der_only(h, 0x04)
            if len(fields["hwid"]) != size:
                raise ValueError("hwID is %d bytes, not %d" % (len(fields["hwid"]), size))
        if "csp_id" in raw:
            fields["csp_id"] = der_ia5(raw["csp_id"])
        if signer == "VCEK" and ("hwid" not in fields or "csp_id" in fields):
            raise ValueError("a VCEK has an HWID and no CSP_ID")
        if signer == "VLEK" and ("hwid" in fields or not fields.get("csp_id")):
            raise ValueError("a VLEK has a CSP_ID and no HWID")
    except ValueError as exc:
        raise bad(exc) from None
    fields["tcb"] = sum(fields[name] << (8 * pos) for name, pos in layout.items())
    return cert, fields


def report_product(r, version, exts, signer):
    """Step 8's product line: the one the signing certificate names (its
    chain to that line's ARK is checked next); the CPUID of a version 3+
    report must agree with it. The stepping ("Milan-B0") is not compared."""
    name, line = exts["product_name"], exts["line"]
    if version >= 3:
        fam, model = r[0x188], r[0x189]
        family_lines = {0x19: ("Milan", "Genoa"), 0x1A: ("Turin",)}.get(fam)
        cpu_line = {(0x19, 0x01): "Milan", (0x19, 0x11): "Genoa", (0x1A, 0x02): "Turin"}.get((fam, model))
        if cpu_line is not None and cpu_line != line:
            raise Fail("snp.vcek.product", "the %s certificate is for product %r, but the report comes from a %s part (CPUID family 0x%02x, model 0x%02x)"
                       % (signer, name, cpu_line, fam, model))
        if family_lines is None:
            raise Fail("snp.product", "CPUID family 0x%02x (model 0x%02x) is not a known SEV-SNP processor family" % (fam, model))
        if line not in family_lines:
            raise Fail("snp.vcek.product", "the %s certificate is for product %r, but the report comes from a CPUID family 0x%02x part, which holds %s"
                       % (signer, name, fam, ", ".join(family_lines)))
    return line


# --- Roots and the certificate chain (step 8) ------------------------------

PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def common_name(cert):
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[0].value if attrs else ""


def load_roots(data):
    """ARK, ASK and ASVK certificates per product line from PEM (other
    PEM blocks, such as the keys of a simulated chain, are skipped)."""
    arks, inter = {}, []
    for kind, body in PEM_BLOCK.findall(data):
        if kind != b"CERTIFICATE":
            continue
        cert = x509.load_der_x509_certificate(base64.b64decode(body))
        cn = common_name(cert)
        if cn.startswith("ARK-"):
            arks[cn[4:]] = cert
        elif cn.startswith("SEV-"):
            inter.append(cert)
        else:
            raise ConfigError("certificate %r is not an AMD ARK, ASK or ASVK" % cn)
    roots = {}
    for c in inter:
        cn = common_name(c)
        vlek = cn.startswith("SEV-VLEK-")
        product = cn[len("SEV-VLEK-"):] if vlek else cn[len("SEV-"):]
        ark = arks.get(product)
        if ark is None:
            raise ConfigError("no ARK-%s for %r" % (product, cn))
        try:
            verify_signed(c.public_bytes(Encoding.DER), ark.public_key())
        except ValueError as exc:
            raise ConfigError("%r is not signed by ARK-%s: %s" % (cn, product, exc)) from None
        roots.setdefault(product, []).append({"ark": ark, "ask": c, "vlek": vlek})
    if not roots:
        raise ConfigError("no AMD roots found")
    return roots


def is_ca(cert):
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def within(cert, now):
    return not_before(cert) <= now <= not_after(cert)


def verify_chain(vcek, vcek_der, signer, product, roots, now):
    """Finds the pinned chain of product that certifies the VCEK now."""
    candidates = [c for c in roots.get(product, []) if c["vlek"] == (signer == "VLEK")]
    if not candidates:
        raise Fail("snp.vcek.chain", "the trusted roots have no %s %s chain (they cover %s)" % (product, signer, sorted(roots)))
    errors = []
    for ch in candidates:
        ark, ask = ch["ark"], ch["ask"]
        try:
            if vcek.issuer != ask.subject:
                raise ValueError("issuer %s is not %s" % (vcek.issuer.rfc4514_string(), ask.subject.rfc4514_string()))
            verify_signed(vcek_der, ask.public_key())
            if not is_ca(ask):
                raise ValueError("the intermediate is not a CA")
            for c in (vcek, ask, ark):
                if not within(c, now):
                    raise ValueError("%s is not valid at %s" % (common_name(c), rfc3339(now)))
            return ch
        except ValueError as exc:
            errors.append(str(exc))
    raise Fail("snp.vcek.chain", "the %s certificate does not chain to the trusted %s roots: %s" % (signer, product, "; ".join(errors)))


def check_crl(crl_der, ch, now):
    crl = x509.load_der_x509_crl(crl_der)
    try:
        verify_signed(crl_der, ch["ark"].public_key())
    except ValueError as exc:
        raise Fail("snp.crl", "the CRL is not signed by %s: %s" % (common_name(ch["ark"]), exc)) from None
    if now < not_before(crl):
        raise Fail("snp.crl", "the CRL is not valid before %s" % rfc3339(not_before(crl)))
    if not_after(crl) is None or now >= not_after(crl):
        raise Fail("snp.crl", "the CRL has expired")
    if crl.get_revoked_certificate_by_serial_number(ch["ask"].serial_number) is not None:
        raise Fail("snp.revocation", "%s is revoked" % common_name(ch["ask"]))


# --- Step 9: the report signature -------------------------------------------

def verify_report_signature(r, vcek, signer):
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise Fail("snp.report.signature", "the %s key is not ECDSA P-384" % signer)
    sig = r[SIGNATURE_OFFSET:SIGNATURE_OFFSET + 2 * RS_SIZE]
    rr = int.from_bytes(sig[:RS_SIZE], "little")
    ss = int.from_bytes(sig[RS_SIZE:], "little")
    try:
        key.verify(encode_dss_signature(rr, ss), r[:SIGNATURE_OFFSET], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise Fail("snp.report.signature", "the report is not signed by the %s" % signer) from None


# --- Step 11: policy --------------------------------------------------------

def tcb_le(product, a, b):
    """Every SPL of TCB a is at most the same SPL of TCB b, both in the
    product line's layout (reserved bytes are not compared)."""
    return all(((a >> (8 * i)) & 0xFF) <= ((b >> (8 * i)) & 0xFF) for i in TCB_LAYOUT[product].values())


def chip_matches_hwid(product, chip_id, hwid):
    """CHIP_ID names the chip of the VCEK's hwID: equal to it before
    Turin; from Turin on the 8-byte hwID followed by 56 zero bytes."""
    return len(hwid) == HWID_SIZE[product] and chip_id == hwid + bytes(len(chip_id) - len(hwid))


def check_policy(r, signer, exts, product, measurements):
    fail = Fail
    if signer == "VLEK":
        raise fail("policy.vlek", "the report is signed by a VLEK, not by the chip's VCEK")
    policy = u64(r, 0x08)
    if policy & (1 << 19):
        raise fail("policy.debug", "the guest allows debugging: the host can read and write its memory")
    if policy & (1 << 18):
        raise fail("policy.migrate_ma", "the guest allows a migration agent")
    if policy & (1 << 21):
        raise fail("policy.guest_policy", "the guest allows CXL (guest policy 0x%x)" % policy)
    if u32(r, 0x30) != 0:
        raise fail("policy.vmpl", "the report comes from VMPL %d, only VMPL 0 is accepted" % u32(r, 0x30))
    measurement = r[0x90:0xC0]
    if measurements is not None and measurement not in measurements:
        raise fail("policy.measurement", "measurement %s is not among the %d accepted" % (measurement.hex(), len(measurements)))
    chip_id = r[0x1A0:0x1E0]
    if any(chip_id) and not chip_matches_hwid(product, chip_id, exts["hwid"]):
        raise fail("policy.chip_id", "CHIP_ID is not the HWID the VCEK was issued for")
    reported, current, committed = u64(r, 0x180), u64(r, 0x38), u64(r, 0x1E0)
    if exts["tcb"] != reported:
        raise fail("policy.tcb.vcek", "the certificate is for TCB 0x%016x, the report says 0x%016x" % (exts["tcb"], reported))
    if not tcb_le(product, exts["tcb"], current):
        raise fail("policy.tcb.vcek", "the certificate's TCB exceeds CURRENT_TCB")
    minimum = sum(BASELINE_TCB[product][name] << (8 * pos) for name, pos in TCB_LAYOUT[product].items())
    if not tcb_le(product, minimum, reported):
        raise fail("policy.tcb.minimum", "REPORTED_TCB 0x%016x is below the %s minimum 0x%016x" % (reported, product, minimum))
    if committed != current or r[0x1E8:0x1EB] != r[0x1EC:0x1EF]:
        raise fail("policy.tcb.provisional", "the running firmware is not committed")


# --- The pipeline (SPEC section 6) ------------------------------------------

def verify(cert_der, opts):
    """Verifies an attested certificate; returns the claims or raises Fail.

    The checks run in the order of SPEC section 6. Step 4 decodes the whole
    collection, the SEV-SNP records included (their labels, media types and
    sizes), before the binding parameters are looked at."""
    now = opts["now"]
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise Fail("tls.certificate", "cannot parse the certificate: %s" % exc) from None

    # 3. Validity.
    nb, na = not_before(cert), not_after(cert)
    if now < nb or now > na:
        raise Fail("certificate.validity", "certificate valid from %s to %s, now is %s" % (rfc3339(nb), rfc3339(na), rfc3339(now)))

    # 4. Extension and collection.
    ctype, records = parse_collection(extract_extension(cert))
    role, mode = parse_binding(records)
    report, vcek_der, crl_der = parse_snp_evidence(ctype, records)

    # 5. Binding parameters.
    if role != opts["role"]:
        raise Fail("binding.role", "evidence was made for a %s, expected a %s" % (role, opts["role"]))
    if mode == "bound":
        raise Fail("binding.freshness", "session-bound evidence in a certificate")
    if mode in NONCE_MODES:
        if opts["nonce"] is None:
            raise Fail("binding.nonce", "evidence is bound to a nonce, but this side sent none")
    else:
        if not opts["allow_static"]:
            raise Fail("binding.freshness", "static evidence is not accepted")
        age = (now - nb).total_seconds()
        if age > opts["max_age"]:
            raise Fail("binding.max_age", "static evidence is %ds old, more than the maximum %ds" % (age, opts["max_age"]))

    # 6. Expected REPORT_DATA (in batch mode, via the leaf and its proof).
    leaf = report_data(raw_spki(cert), role, mode, opts["nonce"], unix(nb), unix(na))
    expected = expected_report_data(records, mode, leaf)

    snp = verify_report(report, vcek_der, crl_der, expected, opts)
    return {
        "platform": "amd-sev-snp",
        "simulated": opts["simulated"],
        "role": role,
        "mode": mode,
        "not_before": rfc3339(nb),
        "not_after": rfc3339(na),
        "valid_until": rfc3339(valid_until(vcek_der, crl_der)),
        "report_data": report[0x50:0x90].hex(),
        "evidence_digest": hashlib.sha256(encode_collection(ctype, records)).hexdigest(),
        "snp": snp,
    }


def valid_until(vcek_der, crl_der):
    """When the verdict lapses: the signing certificate's notAfter, or the
    CRL's nextUpdate if earlier."""
    until = not_after(x509.load_der_x509_certificate(vcek_der))
    if crl_der is not None:
        nu = not_after(x509.load_der_x509_crl(crl_der))
        if nu is not None and nu < until:
            until = nu
    return until


def verify_report(report, vcek_der, crl_der, expected, opts):
    """Steps 7 to 11 of SPEC section 6 on a raw report, the DER certificate
    of its signing key and an optional DER CRL: returns the SEV-SNP claims
    or raises Fail. opts needs "roots", "now" and "measurements"."""
    now = opts["now"]

    # 7. Report structure, the signing key's certificate, the product.
    version, signer = check_report_structure(report)
    vcek, exts = parse_signer_cert(vcek_der, signer)
    product = report_product(report, version, exts, signer)
    if crl_der is not None:
        try:
            x509.load_der_x509_crl(crl_der)
        except ValueError as exc:
            raise Fail("snp.crl", "cannot parse the CRL: %s" % exc) from None

    # 8. Chain to the pinned roots, and the CRL.
    ch = verify_chain(vcek, vcek_der, signer, product, opts["roots"], now)
    if crl_der is not None:
        check_crl(crl_der, ch, now)

    # 9. Report signature.
    verify_report_signature(report, vcek, signer)

    # 10. REPORT_DATA.
    if not hmac.compare_digest(report[0x50:0x90], expected):
        raise Fail("snp.report_data", "REPORT_DATA does not match the expected binding (evidence made for another key, nonce or connection)")

    # 11. Policy.
    check_policy(report, signer, exts, product, opts["measurements"])

    h = lambda lo, hi: report[lo:hi].hex()  # noqa: E731
    version_str = lambda off: "%d.%d.%d" % (report[off + 2], report[off + 1], report[off])  # noqa: E731
    claims = {
        "report_version": version,
        "product": product,
        "signer": signer,
        "guest_svn": u32(report, 0x04),
        "guest_policy": u64(report, 0x08),
        "family_id": h(0x10, 0x20),
        "image_id": h(0x20, 0x30),
        "vmpl": u32(report, 0x30),
        "measurement": h(0x90, 0xC0),
        "host_data": h(0xC0, 0xE0),
        "id_key_digest": h(0xE0, 0x110),
        "author_key_digest": h(0x110, 0x140),
        "report_id": h(0x140, 0x160),
        "report_id_ma": h(0x160, 0x180),
        "chip_id": h(0x1A0, 0x1E0),
        "platform_info": u64(report, 0x40),
        "current_tcb": u64(report, 0x38),
        "reported_tcb": u64(report, 0x180),
        "committed_tcb": u64(report, 0x1E0),
        "launch_tcb": u64(report, 0x1F0),
        "cert_tcb": exts["tcb"],
        "current_version": version_str(0x1E8),
        "committed_version": version_str(0x1EC),
    }
    # Mitigation vectors (version 5 and later), left out when zero.
    for name, off in (("launch_mit_vector", 0x1F8), ("current_mit_vector", 0x200)):
        if version >= 5 and u64(report, off):
            claims[name] = u64(report, off)
    return claims


# --- SPEC section 9: session-bound evidence --------------------------------

def bound_report_data(role, exporter, leaf_der, nonce):
    """The section-9.2 derivation. leaf_der is the DER certificate the
    sender presented, or None; nonce is None for the first exchange."""
    if len(exporter) != 32 or exporter == bytes(32):
        raise Fail("binding", "the exporter must be 32 bytes, not all zeros")
    leaf = hashlib.sha256(leaf_der).digest() if leaf_der is not None else bytes(32)
    nonce = nonce if nonce is not None else bytes(32)
    preimage = BOUND_TAG + ROLE_BYTE[role] + MODE_BYTE["bound"] + exporter + leaf + nonce
    assert len(preimage) == 115
    return hashlib.sha512(preimage).digest()


def read_frame(data):
    """One frame (section 9.3) from the start of data: (type, payload)."""
    if len(data) == 0:
        raise Fail("bound.missing", "no frame: the peer sent nothing")
    if len(data) < 4:
        raise Fail("bound.frame", "truncated frame header")
    typ, n = data[0], int.from_bytes(data[1:4], "big")
    if typ == FRAME_EVIDENCE:
        pass
    elif typ == FRAME_NO_EVIDENCE:
        if n != 0:
            raise Fail("bound.frame", "a no-evidence frame with a %d-byte payload" % n)
    elif typ == FRAME_REATTEST:
        if n != 32:
            raise Fail("bound.frame", "a re-attestation request with a %d-byte payload" % n)
    else:
        raise Fail("bound.frame", "unknown frame type 0x%02x" % typ)
    if n > MAX_FRAME:
        raise Fail("bound.frame_size", "a %d-byte frame, over the %d-byte limit" % (n, MAX_FRAME))
    if len(data) < 4 + n:
        raise Fail("bound.frame", "truncated frame payload")
    return typ, data[4:4 + n]


def verify_bound(frame, opts):
    """Verifies the first frame of a peer (SPEC section 9.4) or its answer
    to a re-attestation request (opts["nonce"] set): returns the claims or
    raises Fail. opts needs "role" (the sender's), "exporter" (the value of
    the sender's label, which the receiver computes from its TLS state),
    "peer_cert" (the DER certificate the sender presented, or None), and
    what verify_report needs."""
    typ, payload = read_frame(frame)
    if typ == FRAME_REATTEST:
        raise Fail("bound.frame", "a re-attestation request where evidence was expected")
    if typ == FRAME_NO_EVIDENCE:
        raise Fail("bound.missing", "the peer sent no evidence")
    ctype, records = parse_collection(payload)
    role, mode = parse_binding(records)
    report, vcek_der, crl_der = parse_snp_evidence(ctype, records)
    if role != opts["role"]:
        raise Fail("binding.role", "evidence was made for a %s, expected a %s" % (role, opts["role"]))
    if mode != "bound":
        raise Fail("bound.mode", "%s-mode evidence where session-bound evidence is required" % mode)
    leaf = bound_report_data(role, opts["exporter"], opts["peer_cert"], opts["nonce"])
    # A batch proof, when present, leads from the leaf to the report's root.
    expected = expected_report_data(records, "batch" if BATCH_LABEL in records else "bound", leaf)
    snp = verify_report(report, vcek_der, crl_der, expected, opts)
    return {
        "platform": "amd-sev-snp",
        "simulated": opts["simulated"],
        "role": role,
        "mode": mode,
        "valid_until": rfc3339(valid_until(vcek_der, crl_der)),
        "report_data": report[0x50:0x90].hex(),
        "evidence_digest": hashlib.sha256(encode_collection(ctype, records)).hexdigest(),
        "snp": snp,
    }


# --- Input: files and live servers ------------------------------------------

def read_certificate(path):
    """A certificate from a PEM (first CERTIFICATE block) or DER file."""
    with open(path, "rb") as f:
        data = f.read()
    for kind, body in PEM_BLOCK.findall(data):
        if kind == b"CERTIFICATE":
            return base64.b64decode(body)
    if b"-----BEGIN" in data:
        raise ConfigError("%s has no CERTIFICATE block" % path)
    return data


def fetch_certificate(hostport, nonce, timeout=10.0):
    """Connects with TLS 1.3, offering the nonce in ALPN (SPEC section 5),
    and returns the server's certificate (DER)."""
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError("--connect wants HOST:PORT, not %r" % hostport)
    host = host.strip("[]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The certificate is self-signed; the evidence is what is verified.
    # (OpenSSL still checks the CertificateVerify signature, i.e. that the
    # server holds the certificate's key.)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if nonce is not None:
        ctx.set_alpn_protocols([NONCE_PREFIX + nonce.hex()])
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host if not host[:1].isdigit() else None) as tls:
                if tls.version() != "TLSv1.3":
                    raise Fail("tls.version", "attested TLS needs TLS 1.3, negotiated %s" % tls.version())
                alpn = tls.selected_alpn_protocol()
                if alpn is not None and alpn.startswith(NONCE_PREFIX):
                    raise Fail("nonce.alpn", "the server selected the nonce entry as its application protocol")
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise Fail("tls.handshake", "cannot connect to %s: %s" % (hostport, exc)) from None
    if not der:
        raise Fail("tls.certificate", "the server sent no certificate")
    return der


def parse_hex(s, size, what):
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise ConfigError("%s is not hex" % what) from None
    if len(b) != size:
        raise ConfigError("%s is %d bytes, want %d" % (what, len(b), size))
    return b


def main(argv=None):
    p = argparse.ArgumentParser(description="Verify atls evidence (interop/SPEC.md) in a certificate.")
    p.add_argument("--roots", required=True, help="PEM file of the pinned AMD ARK and ASK certificates")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cert", help="the attested certificate, PEM or DER")
    src.add_argument("--connect", metavar="HOST:PORT", help="fetch the certificate from a TLS 1.3 server")
    src.add_argument("--bound-frame", metavar="FILE", help="a recorded session-bound evidence frame (SPEC section 9)")
    p.add_argument("--exporter", help="with --bound-frame: the connection's exporter for the sender's label, 64 hex digits")
    p.add_argument("--peer-cert", help="with --bound-frame: the certificate the sender presented, PEM or DER (none if absent)")
    p.add_argument("--role", required=True, choices=("server", "client"), help="the role the peer must have attested as")
    p.add_argument("--nonce", help="the nonce this side sent, 64 hex digits")
    p.add_argument("--mode-allow-static", action="store_true", help="accept static (nonce-less) evidence")
    p.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE, help="maximum age of static evidence in seconds (default %(default)s)")
    meas = p.add_mutually_exclusive_group(required=True)
    meas.add_argument("--measurement", action="append", help="an accepted launch measurement, 96 hex digits (repeatable)")
    meas.add_argument("--any-measurement", action="store_true", help="accept any measurement (the claims still show it)")
    p.add_argument("--now", help="verification time, RFC 3339 (default: now)")
    p.add_argument("--simulated", action="store_true", help="the roots are a simulator's; claims say so")
    args = p.parse_args(argv)

    try:
        with open(args.roots, "rb") as f:
            roots = load_roots(f.read())
        nonce = parse_hex(args.nonce, 32, "--nonce") if args.nonce else None
        measurements = None if args.any_measurement else [parse_hex(m, 48, "--measurement") for m in args.measurement]
        now = parse_rfc3339(args.now) if args.now else datetime.datetime.now(UTC)
        if args.connect and nonce is None:
            nonce = secrets.token_bytes(32)
        opts = {"roots": roots, "role": args.role, "nonce": nonce, "allow_static": args.mode_allow_static,
                "max_age": args.max_age, "measurements": measurements, "now": now, "simulated": args.simulated}
        if args.bound_frame:
            if not args.exporter:
                raise ConfigError("--bound-frame needs --exporter")
            opts["exporter"] = parse_hex(args.exporter, 32, "--exporter")
            opts["peer_cert"] = read_certificate(args.peer_cert) if args.peer_cert else None
            with open(args.bound_frame, "rb") as f:
                claims = verify_bound(f.read(), opts)
        else:
            der = fetch_certificate(args.connect, nonce) if args.connect else read_certificate(args.cert)
            claims = verify(der, opts)
    except Fail as exc:
        print("FAIL %s: %s" % (exc.check, exc.reason))
        return 1
    except (ConfigError, OSError, ValueError) as exc:
        sys.stderr.write("atls_verify: %s\n" % exc)
        return 2
    json.dump(claims, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
