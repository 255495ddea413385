"""NCP KMS key management as data shared by the client and the emulator: the calls that read and change a
key's version states and read its activity history, per API generation, and which generation and host
manage a key whatever generation the rotation speaks.

API 1.0 has no key management. The same access key, signed with signature v2, reaches the 2.0 and v3
management calls on the ocapi host of the key's region (account authentication); token auth reaches no
management call. Documented (reference/ncp-kms-api.md §1.1, §3.6, §6 and the API pages named there):

* 2.0: ``GET /kms/v1/keys/{keyTag}/versions`` → ``data.{currentVersion, versionList: [{version, status
  ENABLE|DISABLE, statusDate, rotatedDate}]}``; ``POST …/versions/{version}/disable`` and ``…/enable`` →
  ``data.{version, status, statusDate}`` (not the newest version, not on a disabled key);
  ``GET …/activities?timestampFrom&timestampTo&pageNo&pageSize`` (ms, pages from 1, up to 200 a page, the
  last day by default) → ``data.{activityLogList, pageSize, currentPageNo, totalPageNo, totalCount}``.
* v3: ``GET /kms/v3/keys/{keyTag}/versions/{version}`` → ``{version, status ENABLED|DISABLED}``;
  ``PATCH`` the same path with ``{"status"}`` (``{}`` changes nothing; the current version cannot
  change); ``GET …/versions?pageNo&pageSize`` (pages from 0, ascending, items carry ``current``);
  ``GET …/activities?pageNo&pageSize`` (newest first, the last 24 hours unless a period is given, loaded
  asynchronously, filters ``actionCode``/``resultCode``/``requestType``/``requestorId``/``requestorIp``).

Where the pages stop (the fields of an activity entry, v3's list envelopes and period parameters, a
version's creation time on v3) the choices are marked ``ASSUMPTION`` and listed in the emulator's
``ASSUMPTIONS`` (docs/ncp.md). Parsing is lenient where it is assumed: a reply in another shape makes
the history unreadable, never a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from rewrap.ncp.generations import GENERATIONS, VERSIONS_SEGMENT
from rewrap.ncp.regions import GLOBAL_OCAPI, REGION_HOSTS, key_region

# The generation that manages a key, by the generation its rotation speaks (1.0 has no management).
MANAGED_BY: Mapping[str, str] = {"1.0": "v3", "2.0": "2.0", "v3": "v3"}
ACTIVITIES_SEGMENT = "activities"
MAX_PAGE_SIZE = 200  # documented for both generations
# NCP keeps a key's activity history this long and this deep (then the oldest entries go).
HISTORY_DAYS = 30
HISTORY_RECORDS = 30_000
GOV_OCAPI = "https://ocapi.gov-ncloud.com"
_GOV_HOSTS = frozenset({"kms.apigw.gov-ntruss.com", "ocapi.gov-ncloud.com"})
_NCP_HOSTS = frozenset(
    {"kms.apigw.ntruss.com", "ocapi.ncloud.com", *REGION_HOSTS.values()} | _GOV_HOSTS,
)
# Activity actions that open a ciphertext: the calls a disabled version refuses.
OPENING_ACTIONS = ("decrypt", "reencrypt", "re-encrypt", "verify")


@dataclass(frozen=True)
class Management:
    """One generation's management calls: paths, bodies and the words of its replies."""

    api: str
    enabled: str  # a version's state words
    disabled: str
    set_by: str  # "segment": POST …/versions/{v}/{enable|disable}; "patch": PATCH …/versions/{v} {"status"}
    first_page: int
    period: tuple[str, str]  # query parameters bounding the activities asked for
    period_in_ms: bool  # Unix ms (2.0) or ISO 8601 (v3)
    activity_list: str  # the field of the reply holding the entries
    version_list: str  # the field of the versions list holding the versions

    def key_path(self, key_tag: str) -> str:
        return GENERATIONS[self.api].key_path(key_tag)

    def versions_path(self, key_tag: str, page: int | None = None) -> str:
        path = f"{self.key_path(key_tag)}/{VERSIONS_SEGMENT}"
        return path if page is None else f"{path}?{urlencode({'pageNo': page, 'pageSize': MAX_PAGE_SIZE})}"

    def version_path(self, key_tag: str, version: int) -> str:
        return f"{self.key_path(key_tag)}/{VERSIONS_SEGMENT}/{version}"

    def state_change(self, key_tag: str, version: int, enable: bool) -> tuple[str, str, dict[str, Any] | None]:
        """(method, path, body) of the call that enables or disables one version."""
        if self.set_by == "segment":
            return "POST", f"{self.version_path(key_tag, version)}/{'enable' if enable else 'disable'}", None
        return "PATCH", self.version_path(key_tag, version), {"status": self.enabled if enable else self.disabled}

    def activities_path(self, key_tag: str, since_ms: int, until_ms: int, page: int) -> str:
        start, end = self.period
        bounds = (since_ms, until_ms) if self.period_in_ms else (iso(since_ms), iso(until_ms))
        query = {start: bounds[0], end: bounds[1], "pageNo": page, "pageSize": MAX_PAGE_SIZE}
        return f"{self.key_path(key_tag)}/{ACTIVITIES_SEGMENT}?{urlencode(query)}"


MANAGEMENT: Mapping[str, Management] = {
    "2.0": Management(
        api="2.0",
        enabled="ENABLE",
        disabled="DISABLE",
        set_by="segment",
        first_page=1,
        period=("timestampFrom", "timestampTo"),
        period_in_ms=True,
        activity_list="activityLogList",
        version_list="versionList",
    ),
    "v3": Management(
        api="v3",
        enabled="ENABLED",
        disabled="DISABLED",
        set_by="patch",
        first_page=0,
        # ASSUMPTION: v3 names its period startDateTime/endDateTime (ISO 8601) and answers
        # {"activities": [...], "totalCount"}; lists versions as {"versions": [...], "totalCount"}.
        period=("startDateTime", "endDateTime"),
        period_in_ms=False,
        activity_list="activities",
        version_list="versions",
    ),
}


def management_for(api: str) -> Management:
    """The management calls that serve a key whose rotation speaks ``api``."""
    return MANAGEMENT[MANAGED_BY[api]]


def management_endpoint(endpoint: str, key_tag: str) -> str:
    """The ocapi host that manages ``key_tag``: the region's host for a region-isolated key, the
    global (or gov) one otherwise. An endpoint NCP does not name (a proxy, the local emulator) serves
    management itself."""
    host = (urlsplit(endpoint).hostname or "").lower()
    if host not in _NCP_HOSTS:
        return endpoint.rstrip("/")
    if host in _GOV_HOSTS:
        return GOV_OCAPI
    region = key_region(key_tag)
    return f"https://{REGION_HOSTS[region]}" if region is not None else GLOBAL_OCAPI


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- activity entries --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Activity:
    """One entry of a key's activity history. NCP's entries name no key version."""

    time_ms: int
    action: str
    succeeded: bool | None  # None: the entry does not say
    requestor: str = ""
    ip: str = ""

    @property
    def opens_ciphertext(self) -> bool:
        name = self.action.lower().replace("_", "")
        return any(word in name for word in OPENING_ACTIONS)


def activity_entry(api: str, activity: Activity) -> dict[str, Any]:
    """An entry as ``api`` writes it (the emulator's side of :func:`activity_from`).
    ASSUMPTION: 2.0 entries carry requestTime (ms), actionName, result and a requestor object (the shape of
    the documented last-use-info reply); v3 entries the documented filter fields plus createdDateTime."""
    result = "SUCCESS" if activity.succeeded else "FAIL"
    if api == "2.0":
        requestor = {"requestType": "API", "id": activity.requestor, "ip": activity.ip}
        entry = {"requestTime": activity.time_ms, "actionName": activity.action, "result": result}
        return {**entry, "requestor": requestor}
    return {
        "createdDateTime": iso(activity.time_ms),
        "actionCode": activity.action,
        "resultCode": result,
        "requestType": "API",
        "requestorId": activity.requestor,
        "requestorIp": activity.ip,
    }


def activity_from(entry: Any) -> Activity | None:
    """An entry of either generation's shape, or None when it tells no time."""
    if not isinstance(entry, dict):
        return None
    raw = entry.get("requestor")
    requestor: dict[str, Any] = raw if isinstance(raw, dict) else {}
    time_ms = _ms(entry.get("requestTime", entry.get("createdDateTime", entry.get("timestamp"))))
    if time_ms is None:
        return None
    action = str(entry.get("actionCode") or entry.get("actionName") or entry.get("action") or "?")
    result = entry.get("resultCode", entry.get("result"))
    succeeded = None if result is None else str(result).upper() in ("SUCCESS", "SUCCEEDED", "OK", "200")
    who = str(entry.get("requestorId") or requestor.get("id") or "")
    ip = str(entry.get("requestorIp") or requestor.get("ip") or "")
    return Activity(time_ms, action, succeeded, who, ip)


def _ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
    return None
