"""NCP's hosts and regions: which host serves which API generation and which region, which key tags are
region-isolated (``kr-`` / ``jpn-``), and the refusal, before sending, of such a key on another region's host.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from rewrap.errors import KmsWrongRegionError

GLOBAL_OCAPI = "https://ocapi.ncloud.com"
# Region-isolated keys carry a region prefix in their tag (case-insensitive) and answer only on that
# region's host; anywhere else NCP answers 400.
REGION_HOSTS: Mapping[str, str] = {"kr": "ocapi-kr.ncloud.com", "jpn": "ocapi-jp.ncloud.com"}
KEY_TAG_REGION_PREFIXES: Mapping[str, str] = {"kr-": "kr", "jpn-": "jpn"}
_APIGW_HOSTS = frozenset({"kms.apigw.ntruss.com", "kms.apigw.gov-ntruss.com"})
_GLOBAL_HOSTS = _APIGW_HOSTS | {"ocapi.ncloud.com", "ocapi.gov-ncloud.com"}

# ASSUMPTION: the code NCP puts in the 400 for a region-prefixed key called on another region's host
# (only the status is documented). 1.0/2.0 envelope code, v3 errorCode.
WRONG_REGION_CODE = "REGION_MISMATCH"
WRONG_REGION_CODE_V3 = "RegionMismatch"
WRONG_REGION_CODES = frozenset({WRONG_REGION_CODE, WRONG_REGION_CODE_V3})


def key_region(key_tag: str) -> str | None:
    """``kr`` / ``jpn`` for a region-isolated key tag, None for a global one."""
    lowered = key_tag.lower()
    return next((region for prefix, region in KEY_TAG_REGION_PREFIXES.items() if lowered.startswith(prefix)), None)


def endpoint_region(endpoint: str) -> str | None:
    """The region an NCP host serves (``global``, ``kr``, ``jpn``); None for hosts NCP does not name
    (a proxy, the local emulator): there the server decides."""
    host = (urlsplit(endpoint).hostname or "").lower()
    if host in _GLOBAL_HOSTS:
        return "global"
    return next((region for region, name in REGION_HOSTS.items() if host == name), None)


def wrong_region(key_tag: str, endpoint: str) -> KmsWrongRegionError | None:
    """The error for a region-isolated key sent to a host of another region, before anything is sent.
    ASSUMPTION: global keys may be called on the regional hosts too (only the reverse is documented)."""
    region = key_region(key_tag)
    served = endpoint_region(endpoint)
    if region is None or served is None or served == region:
        return None
    return KmsWrongRegionError(
        f"key tag {key_tag[:12]}… is region-isolated ({region}); set NCP_KMS_ENDPOINT to "
        f"https://{REGION_HOSTS[region]} (it is {urlsplit(endpoint).hostname})"
    )


def check_endpoint_serves(api: str, endpoint: str) -> str | None:
    """Why ``endpoint`` cannot serve ``api``, for the NCP hosts we know; None when it can (or is unknown)."""
    host = (urlsplit(endpoint).hostname or "").lower()
    known = _GLOBAL_HOSTS | set(REGION_HOSTS.values())
    if host not in known:
        return None
    if (api == "1.0") != (host in _APIGW_HOSTS):
        hosts = "kms.apigw.ntruss.com" if api == "1.0" else "ocapi.ncloud.com or ocapi-kr/-jp.ncloud.com"
        return f"NCP_KMS_API={api} is served on {hosts}, not on {host}"
    return None
