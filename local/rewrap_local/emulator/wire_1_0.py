"""KMS API 1.0: ``POST /keys/{v1|v2}/{keyTag}/{action}`` (API Gateway signature v1 or v2).

A string request gets a string back, an array request an array (all items together up to the
generation's ``list_limit_bytes``). Success ``{"code": "SUCCESS", "msg": "", "data": {...}}``; errors
``{"code", "msg", "data": null}``, the gateway's 404 for an unknown key. 1.0 has no key administration.
"""

from __future__ import annotations

from typing import Any

from rewrap.ncp.generations import GENERATIONS

from .wire import Answer, Wire


class Wire10(Wire):
    generation = GENERATIONS["1.0"]

    def success(self, data: dict[str, Any]) -> Answer:
        return 200, {"code": "SUCCESS", "msg": "", "data": data}
