"""Typed errors, one per failure mode.

Every message is written for the person who set the bridge up, not for a programmer: it names the
cause and the fix. No message may contain a password, a token, an Account-Id or any hash of them.
`reason` is a short stable key used in metrics, logs and the state's circuit breakers.

One module per side (base: the common base and the configuration's; linkup, nightscout, state). Every
class is named from here, `from linkup_sync.errors import X`: that is the public way to name them (the
troubleshooting page documents every class this package exports).
"""

from __future__ import annotations

from .base import (
    ConfigError,
    LinkupSyncError,
    SecretError,
)
from .linkup import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpError,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpMalformedResponse,
    LinkUpMissingHeader,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkUpRateLimited,
    LinkUpRedirectLoop,
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpTooLarge,
    LinkUpUnauthorized,
    LinkUpUnreachable,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
)
from .nightscout import (
    NightscoutError,
    NightscoutPartialUpload,
    NightscoutRejected,
    NightscoutTooLarge,
    NightscoutUnauthorized,
    NightscoutUnreachable,
)
from .state import (
    StateConflict,
    StateUnavailable,
)

__all__ = [
    "ConfigError",
    "LinkUpActionRequired",
    "LinkUpBadCredentials",
    "LinkUpBlocked",
    "LinkUpError",
    "LinkUpLocked",
    "LinkUpMaintenance",
    "LinkUpMalformedResponse",
    "LinkUpMissingHeader",
    "LinkUpNoConnections",
    "LinkUpPatientNotFound",
    "LinkUpRateLimited",
    "LinkUpRedirectLoop",
    "LinkUpServerError",
    "LinkUpTimeout",
    "LinkUpTooLarge",
    "LinkUpUnauthorized",
    "LinkUpUnreachable",
    "LinkUpVersionContradicted",
    "LinkUpVersionRejected",
    "LinkupSyncError",
    "NightscoutError",
    "NightscoutPartialUpload",
    "NightscoutRejected",
    "NightscoutTooLarge",
    "NightscoutUnauthorized",
    "NightscoutUnreachable",
    "SecretError",
    "StateConflict",
    "StateUnavailable",
]
