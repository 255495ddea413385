"""NCP KMS key management: read a key's version states, enable or disable versions, read its activity
history. The calls and their words are in :mod:`rewrap.ncp.management`; the transport (signature v2,
retries, credential refresh) is the crypto client's.

A key is managed through the generation :data:`rewrap.ncp.management.MANAGED_BY` names for the rotation's
generation (API 1.0 has no management: v3 serves it, with the same access key) on the ocapi host of the
key's region. Token-only credentials reach no management call, and a sub account whose policy may not
change keys is refused: both raise :class:`KeyManagementUnavailableError` before anything changes.
"""

from __future__ import annotations

from typing import Any

import httpx

from rewrap.adapters.ncp_kms.transport import CredentialsSource, KmsTransport, new_http_client
from rewrap.core.ports import KeyActivity, KeyState, VersionState
from rewrap.deadline import SYSTEM_CLOCK, Clock
from rewrap.errors import (
    KeyManagementUnavailableError,
    KmsAuthError,
    KmsInvalidReplyError,
    KmsRejectedError,
)
from rewrap.ncp.generations import ENABLED_STATES, GENERATIONS
from rewrap.ncp.management import (
    HISTORY_RECORDS,
    MAX_PAGE_SIZE,
    Management,
    activity_from,
    management_endpoint,
    management_for,
)
from rewrap.ncp.regions import wrong_region

# The gateway's "Permission Denied" (401, code 210): the sub account's policy does not allow the call.
PERMISSION_DENIED_CODE = "210"


class NcpKeyManager:
    """Key management for keys rotated through ``rotation_api`` at ``endpoint`` (the crypto endpoint:
    the management host is derived from it and the key tag)."""

    def __init__(
        self,
        rotation_api: str,
        endpoint: str,
        credentials: CredentialsSource,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.rotation_api = rotation_api
        self.management: Management = management_for(rotation_api)
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.http = http or new_http_client(timeout)
        self._transport_options: dict[str, Any] = {
            "signature_version": "v2",
            "http": self.http,
            "timeout": timeout,
            "max_attempts": max_attempts,
            "rate_limiter": None,
            "backoff_base": 0.2,
            "backoff_cap": 5.0,
            "clock": clock,
        }
        self._transports: dict[str, KmsTransport] = {}

    def describe(self, key_tag: str) -> str:
        where = f"KMS {self.management.api} on {management_endpoint(self.endpoint, key_tag)}, signature v2"
        if self.rotation_api != self.management.api:
            return f"{where} (NCP_KMS_API={self.rotation_api} has no key management; the same access key manages it)"
        return where

    # --- reading ---------------------------------------------------------------------------------------
    def state(self, key_tag: str) -> KeyState:
        data = self._call(key_tag, "GET", self.management.key_path(key_tag))
        info = GENERATIONS[self.management.api].key_info_from(key_tag, data)
        if self.management.set_by == "segment":  # 2.0: every version in one list
            listed = self._call(key_tag, "GET", self.management.versions_path(key_tag))
            entries = listed.get(self.management.version_list)
            versions = [self._version(entry) for entry in entries] if isinstance(entries, list) else []
        else:  # v3: the documented one-version call for each version
            versions = [
                self._version(self._call(key_tag, "GET", self.management.version_path(key_tag, v)))
                for v in range(1, info.current_version + 1)
            ]
        if not versions:
            raise KmsInvalidReplyError("the versions reply holds no version")
        return KeyState(key_tag, info.status or "ENABLED", info.current_version, {v.version: v for v in versions})

    def activities(self, key_tag: str, since_ms: int, until_ms: int) -> list[KeyActivity]:
        """Every entry of the period that has arrived, newest first (page by page, at most what NCP keeps)."""
        found: list[KeyActivity] = []
        page = self.management.first_page
        while len(found) < HISTORY_RECORDS:
            data = self._call(key_tag, "GET", self.management.activities_path(key_tag, since_ms, until_ms, page))
            entries = data.get(self.management.activity_list)
            if not isinstance(entries, list):
                raise KmsInvalidReplyError(f"the activity history holds no {self.management.activity_list} list")
            for entry in entries:
                activity = activity_from(entry)
                if activity is None:
                    raise KmsInvalidReplyError("an activity entry tells no time")
                found.append(
                    KeyActivity(
                        activity.time_ms,
                        activity.action,
                        activity.succeeded,
                        activity.requestor,
                        activity.ip,
                        activity.opens_ciphertext,
                    )
                )
            if len(entries) < MAX_PAGE_SIZE:
                break
            page += 1
        return sorted(found, key=lambda a: a.time_ms, reverse=True)

    # --- changing --------------------------------------------------------------------------------------
    def set_version(self, key_tag: str, version: int, *, enable: bool) -> VersionState:
        method, path, body = self.management.state_change(key_tag, version, enable)
        try:
            data = self._call(key_tag, method, path, body)
        except KmsRejectedError:
            # Some 2.0 pages read as refusing a change to the state a version already has: then the
            # version is as asked, which is what this call is for.
            now = self.state(key_tag).versions.get(version)
            if now is not None and now.enabled == enable:
                return now
            raise
        state = self._version(data)
        if state.version != version or state.enabled != enable:
            raise KmsInvalidReplyError(f"NCP answered v{state.version} {'enabled' if state.enabled else 'disabled'}")
        return state

    # --- one call ------------------------------------------------------------------------------------
    def _call(self, key_tag: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.credentials.get().can_sign:
            raise KeyManagementUnavailableError(
                "the NCP secret holds only ocapi tokens, and no key management call takes a token: it needs "
                "accessKey and secretKey (signature v2)",
                why="token-only",
            )
        transport = self._transport(key_tag)
        try:
            data: dict[str, Any] = transport.call(method, path, body, key_tag=key_tag)
        except KmsAuthError as error:
            if error.http_status == 403 or error.error_code == PERMISSION_DENIED_CODE:
                raise KeyManagementUnavailableError(
                    f"NCP refused the management call for this access key's permissions ({error})", why="permission"
                ) from error
            raise
        return data

    def _transport(self, key_tag: str) -> KmsTransport:
        endpoint = management_endpoint(self.endpoint, key_tag)
        refused = wrong_region(key_tag, endpoint)
        if refused is not None:
            raise refused
        if endpoint not in self._transports:
            generation = GENERATIONS[self.management.api]
            self._transports[endpoint] = KmsTransport(generation, endpoint, self.credentials, **self._transport_options)
        return self._transports[endpoint]

    def _version(self, entry: Any) -> VersionState:
        if not isinstance(entry, dict):
            raise KmsInvalidReplyError("a version entry is not an object")
        version, status = entry.get("version"), entry.get("status")
        if isinstance(version, bool) or not isinstance(version, int) or not isinstance(status, str):
            raise KmsInvalidReplyError("a version entry names no version and state")
        created = entry.get("rotatedDate", entry.get("createdDate"))
        changed = entry.get("statusDate")
        return VersionState(
            version,
            status in ENABLED_STATES,
            changed if isinstance(changed, int) and not isinstance(changed, bool) else None,
            created if isinstance(created, int) and not isinstance(created, bool) else None,
        )
