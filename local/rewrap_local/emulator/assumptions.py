"""The one list of what rewrap assumes about NCP KMS where the public docs are silent or disagree. Each
entry is applied where the code says ``ASSUMPTION`` (``generations``, ``regions``, ``reply_errors``, the
client); correct it there and here.
"""

from __future__ import annotations

# Every assumption that remains, with what supports it (reference/ncp-kms-api.md sections). The README
# table "Assumptions" lists the same entries; tests/integration/test_ncp_answers.py keeps them in step.
ASSUMPTIONS: tuple[tuple[str, str], ...] = (
    (
        "1.0 re-encrypt is sent as reencrypt first, re-encrypt on a 404 code 300",
        "ko/ja/gov and the newest en page (2026-09-17) say reencrypt, the seed page re-encrypt (§1.1, §8)",
    ),
    (
        "2.0 re-encrypt is sent as re-encrypt first, reencrypt on a 404 code 300",
        "both spellings listed (§1.1); 2.0 paths spell words apart (create-custom-key, get-pub-key)",
    ),
    (
        "2.0 arrays follow 1.0's 32 KB combined limit; a 400 naming an invalid type turns on one item per request",
        "en token page shows arrays, the ko 2.0 table String only (§3.3, §8); no 2.0 limit documented (§4)",
    ),
    (
        "v3 batches have no combined size limit besides 1-100 items",
        "1-100 items documented (§3.3, §4); each token at most 43,746 characters",
    ),
    (
        "v3 success bodies use 2.0's field names without the envelope; a re-encrypt result named "
        "ciphertext is taken too",
        "field names undocumented (§3.1, §3.3, §8); the token pattern and version checks guard the value",
    ),
    (
        'v3 batch results are {"results": {"0": {...}}}; issue-custom-key answers keyVersion',
        "index keys documented (§8), item field names not",
    ),
    (
        "v3 batch-encrypt is POST .../batch-encrypt",
        "by analogy with batch-decrypt, batch-re-encrypt and the token API batchEncryptWithToken (§1.1)",
    ),
    (
        "a region-isolated key on another region's host answers 400 REGION_MISMATCH / RegionMismatch",
        "only the 400 is documented (§1); global keys are taken to work on regional hosts",
    ),
    (
        "v3 item errorCodes TooManyRequests, InternalServerError, ServiceUnavailable, GatewayTimeout are retryable",
        "the v3 errorCode table is not documented (§5.3)",
    ),
    (
        "key and version states come from key info (2.0, v3 with a signature); 1.0 and token auth read "
        "UNPROCESSABLE_ENTITY and probe with an encrypt",
        "states documented (§3.6, §6); 1.0 documents UNPROCESSABLE_ENTITY Invalid status (§5.1); the error for "
        "a disabled key is not (§6); there is no getKey with a token (§8)",
    ),
    (
        "the request id is x-ncp-request-id, or x-ncp-trace-id from the gateway",
        "x-ncp-request-id documented for v3 (§2.1); the gateway's trace header name is not",
    ),
    (
        "ocapi access tokens are JWTs whose exp claim tells their expiry",
        "tokens are per key and expire (§2.4, §8); the claim is read, never verified (NCP verifies)",
    ),
    (
        "2.0 error bodies look like 1.0's ({code, msg}) or the gateway's ({error: {...}})",
        "2.0 error table not retrieved (§5.2); openbao parses both shapes (§8)",
    ),
    (
        "key management (2.0, v3) reaches keys rotated through 1.0 with the same access key, on the ocapi "
        "host of the key's region; 1.0 keys are managed through v3",
        "1.0 offers crypto only, 2.0 adds every console key function with account auth (§1); the hosts serve "
        "2.0 and v3 alike (§1)",
    ),
    (
        "a management call the sub account's policy does not allow answers 401 with gateway code 210 "
        "(Permission Denied), or 403",
        "the API Gateway table (§5.4); whether ocapi answers with it is not confirmed (§7 item 10)",
    ),
    (
        "2.0 activity entries carry requestTime (ms), actionName, result and a requestor {requestType, id, ip}",
        "the 2.0 list envelope is documented (activityLogList, pageSize, currentPageNo, totalPageNo, "
        "totalCount), its entries were not retrieved; the requestor object is last-use-info's",
    ),
    (
        "v3 activities take startDateTime/endDateTime (ISO 8601) and answer {activities: [...]}, entries with"
        " createdDateTime beside the documented filter fields",
        "listKeyActivities documents its filters (actionCode, resultCode, requestType, requestorId, "
        "requestorIp), paging and the 24-hour default, not the period's names or the envelope",
    ),
    (
        "v3 versions tell their creation time as createdDate (ms) and list as {versions: [...]}",
        "getKeyVersion documents version and status, listKeyVersions current and paging; 2.0's list has "
        "rotatedDate (§3.6)",
    ),
    (
        "a 2.0 request to disable a version already disabled (or enable an enabled one) may be refused; "
        "rewrap changes only versions not in that state and reads the state back on a refusal",
        "the English 2.0 pages can be read that way; the Korean ones say it of a disabled key",
    ),
)
