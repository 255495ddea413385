"""KMS API 2.0: ``POST /kms/v1/keys/{keyTag}/{action}`` (signature v2 or ``x-ncp-ocapi-token``).

Bodies as in 1.0; success ``{"code": "SUCCESS", "data": {...}}``. Admin (signature only): key info,
the versions list, rotation, ``POST …/versions/{version}/enable|disable`` and the activity history
(``rewrap.ncp.management``). With ``arrays_2_0`` off, an array body is refused with 400 ``INVALID_REQUEST``
"Invalid type: ... must be a String" (the Korean 2.0 table types it String only). With
``refuse_unchanged_version_2_0`` on, disabling a version already disabled (or enabling one enabled) is
refused with 400: one reading of the English pages ("you can't disable a version … in the Disabled
status"); the Korean pages say it of a disabled key, and by default only that is refused.
"""

from __future__ import annotations

from typing import Any

from rewrap.ncp.generations import GENERATIONS
from rewrap.ncp.management import activity_entry
from rewrap.ncp.regions import GLOBAL_OCAPI, REGION_HOSTS, key_region

from .errors import EmulatorError
from .keys import Key
from .routes import Route
from .wire import Answer, Wire, item_field, page_of, path_version


class Wire20(Wire):
    generation = GENERATIONS["2.0"]

    def success(self, data: dict[str, Any]) -> Answer:
        return 200, {"code": "SUCCESS", "data": data}

    def check_items(self, route: Route, body: dict[str, Any]) -> None:
        name = item_field(route.action)
        if not self.switches.arrays_2_0 and isinstance(body.get(name), list):
            raise EmulatorError(f"Invalid type: {name} must be a String")

    def admin(self, route: Route, key: Key, raw: bytes) -> Answer:
        if route.action == "set-version":
            version = path_version(route)
            refuse = self.switches.refuse_unchanged_version_2_0
            self.store.set_version(key.tag, version, enable=route.segment == "enable", refuse_unchanged=refuse)
        if route.action == "activities":
            entries, number, size = page_of(self.activities(route, key), route, "2.0", 100)
            total = len(self.activities(route, key))
            data = {
                "activityLogList": [activity_entry("2.0", entry) for entry in entries],
                "pageSize": size,
                "currentPageNo": number,
                "totalPageNo": max(1, -(-total // size)),
                "totalCount": total,
            }
            self.stats._add("items", route.action)
            return self.success(data)
        with self.store.lock:
            if route.action == "rotate":
                version = self.store.add_version(key)
                data = {"keyTag": key.tag, "version": version, "rotatedDate": key.rotated_ms[-1]}
            elif route.action == "set-version":
                data = _version(key, path_version(route))
            elif route.action == "versions":
                data = _versions(key)
            else:
                data = _key_info(key)
        self.stats._add("items", route.action)
        return self.success(data)


def _version(key: Key, version: int) -> dict[str, Any]:
    return {
        "version": version,
        "status": "DISABLE" if version in key.disabled else "ENABLE",
        "statusDate": key.status_ms[version],
    }


def _versions(key: Key) -> dict[str, Any]:
    return {
        "keyTag": key.tag,
        "currentVersion": key.current,
        "versionList": [{**_version(key, v), "rotatedDate": key.rotated_ms[v - 1]} for v in range(1, key.current + 1)],
    }


AUTO_ROTATION_DAYS = 90


def _key_info(key: Key) -> dict[str, Any]:
    region = key_region(key.tag)
    return {
        "keyTag": key.tag,
        "currentVersion": key.current,
        "isConvergent": key.convergent,
        "keyType": "AES256",
        "status": key.status.removesuffix("D"),
        # auto rotation every 90 days (NCP's default) from the newest version
        "isAutoRotation": True,
        "rotationPeriod": AUTO_ROTATION_DAYS,
        "nextRotationDate": key.rotated_ms[-1] + AUTO_ROTATION_DAYS * 86_400_000,
        "baseUrl": f"https://{REGION_HOSTS[region]}" if region is not None else GLOBAL_OCAPI,
    }
