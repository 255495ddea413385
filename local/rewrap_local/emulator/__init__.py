"""A local NAVER Cloud Platform KMS emulator: a real HTTP server on loopback.

It serves the part of NCP KMS that rewrap uses, in all three API generations over the same keys, with
NCP's paths, API Gateway signatures (verified with ``rewrap.ncp.signing``, so client and emulator share one
string-to-sign), envelopes and limits (``rewrap.ncp.generations`` is the one table of paths and limits both
read, ``rewrap.ncp.regions`` and ``rewrap.ncp.reply_errors`` of hosts and error codes):

* KMS API 1.0 (``wire_1_0``): ``POST /keys/{v1|v2}/{keyTag}/{action}``, string or array bodies.
* KMS API 2.0 (``wire_2_0``): ``POST /kms/v1/keys/{keyTag}/{action}`` with a signature or the
  ``x-ncp-ocapi-token`` header (:meth:`KmsEmulator.issue_token`); key info, versions, rotation,
  ``POST …/versions/{version}/enable|disable`` and the activity history.
* KMS v3 (``wire_v3``): ``/kms/v3/keys/...`` (signature) or ``/kms/v3/token/keys/...`` (token), single
  and ``batch-*`` endpoints; key info, rotation, the versions list, one version's state
  (``GET|PATCH …/versions/{version}``) and the activity history.

Every path is derived from the client's table (``routes``), so both spell them the same way.

Regions: the emulator stands for the host of one region (``region``: ``global`` (default), ``kr`` or
``jpn``; ``--region`` on the command line), since on loopback the ``Host`` header cannot tell. A key tag
with the prefix ``kr-``/``jpn-`` (any case; :meth:`KmsEmulator.create_key` ``region=``) is served only
when that is the emulator's region, on every path family; elsewhere the answer is 400 with code
``REGION_MISMATCH`` (v3 ``RegionMismatch``). Global keys are served in every region.

Crypto (``keys``): AES-256-GCM, one key per version; convergent keys require a context.

Key management (paths and words from ``rewrap.ncp.management``, signature only): the current version
cannot be disabled (v3 docs); a key that is disabled or pending deletion changes no version (2.0 docs)
and refuses every crypto call; a disabled version refuses decrypt and re-encrypt (1.0/2.0 400
``UNPROCESSABLE_ENTITY``, v3 409 ``KeyVersionDisabled``); reads (key info, versions, history) still
answer. :meth:`KmsEmulator.allow_management` with ``False`` gives an access key a viewer's policy: a
call that changes key state answers 401 ``{"error": {"errorCode": "210", "message": "Permission
Denied"}}`` (the gateway table's code). Every request on a key after authentication is added to its
activity history (action, success, the access key, the client's address; reading the history is not),
at most 30,000 entries and 30 days, served newest first; ``activity_delay`` seconds hold new entries back,
as NCP loads them asynchronously.

The public docs leave the HTTP statuses of KMS errors unconfirmed; this emulator chooses:

* 401 ``{"error": {"errorCode": "200", "message": "Authentication Failed"}}`` — unknown access key, bad
  signature, missing header, wrong API key (v1), timestamp >= 5 minutes off the server clock (API Gateway
  table). Nothing from the request is echoed.
* 404 ``{"error": {"errorCode": "300", "message": "Not Found Exception"}}`` — unknown key tag or route.
* 400 ``{"code": "INVALID_REQUEST", "msg": "<reason>", "data": null}`` — malformed JSON, bad or oversized
  ciphertext/plaintext, array items totalling > 32,768 characters, empty array, missing or wrong context,
  decryption failure. A disabled key version: 400 with code ``UNPROCESSABLE_ENTITY``, msg ``Invalid status``.
* 413 (gateway code 430) for bodies over 16 MiB; 500 (code 900) if the emulator itself breaks.
* Injected faults: 429 ``{"error": {"errorCode": "420", "message": "Rate Limited"}}`` (+ ``Retry-After``)
  and 500/502/503/504 ``{"error": {"errorCode": "900", "message": "Unexpected Error"}}``.

Faults (:meth:`KmsEmulator.inject`, kinds in :data:`FAULT_KINDS`, described in ``faults``) hit a request
after authentication or rewrite a successful reply; each is consumed by one matching request and counted
in ``stats.faults_injected``.

Where NCP's pages disagree, the emulator accepts both readings by default, and a switch makes it serve
only one, so the client's fallbacks are tested against a server that does not forgive
(:meth:`KmsEmulator.reset_switches` restores the defaults):

* ``re_encrypt_spelling``: ``"reencrypt"`` or ``"re-encrypt"`` serves only that 1.0/2.0 path (the other
  answers 404, gateway code 300); None (default) serves both.
* ``v3_re_encrypt_field``: the name of the v3 re-encrypt result, single and batch (``newCiphertext``,
  default, or ``ciphertext``).
* ``arrays_2_0``: False makes 2.0 refuse array bodies with 400 ``INVALID_REQUEST`` "Invalid type:
  ciphertext must be a String" (the Korean 2.0 table types it String only).
* ``refuse_unchanged_version_2_0``: True makes 2.0 refuse (400) disabling a version already disabled
  or enabling one enabled, one reading of the English 2.0 pages; the Korean pages say it of a disabled
  key, which is refused either way.
* ``clock_offset``: seconds the emulator's clock is off (its ``Date`` header and the 5-minute check).
* ``activity_delay``: seconds before a new activity entry shows in the history (0 by default).

Key states (:meth:`KmsEmulator.set_key_state`): ``ENABLED``, ``DISABLED`` or ``REVOKED`` (deletion
pending); key info shows them (2.0 ``ENABLE``/``DISABLE``/``REVOKE``). A key not enabled refuses every
crypto call: 1.0/2.0 400 ``UNPROCESSABLE_ENTITY`` "Invalid status" (as a disabled version does; 1.0 has
no key info to tell them apart), v3 409 ``KeyNotEnabled``. Tokens from :meth:`KmsEmulator.issue_token`
are JWT-shaped with an optional ``exp`` claim; an expired one is refused (401). Every reply carries
``x-ncp-request-id``.

Modules: ``core`` (:class:`KmsEmulator`, the path of one request), ``routes`` (paths, from
``rewrap.ncp.generations``), ``auth`` (signatures, tokens), ``keys`` (key store, versions, states, crypto),
``wire`` with ``wire_1_0``/``wire_2_0``/``wire_v3`` (bodies, envelopes, admin calls per generation),
``faults`` (injected faults, latency), ``server`` (HTTP), ``stats``, ``errors``, ``cli``.

Run it: ``python -m rewrap_local.emulator --port 8787 --access-key K --secret-key S``.
"""

from .cli import main
from .core import KmsEmulator
from .errors import EmulatorError
from .faults import BAD_PATTERN_ITEM, FAULT_KINDS
from .stats import EmulatorStats

__all__ = ["BAD_PATTERN_ITEM", "FAULT_KINDS", "EmulatorError", "EmulatorStats", "KmsEmulator", "main"]
