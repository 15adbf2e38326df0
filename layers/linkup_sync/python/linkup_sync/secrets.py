"""Credentials from Secrets Manager through Powertools parameters (cached across warm runs)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .errors import SecretError
from .model import Credentials
from .secret_format import credentials_from_secret, set_secret_hint

# GetSecretValue costs money per call: the secret is read at most hourly by a warm container, and at
# once on the next run after a login failure or a Nightscout 401/403 (`refresh_next`), so a fixed
# secret is picked up by the very next run.
SECRET_MAX_AGE_S = 3600


def _provider_class() -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    class VersionedSecretsProvider(SecretsProvider):  # type: ignore[misc]
        """Also returns the secret's VersionId, so a changed secret can be recognised without hashing it."""

        def _get(self, name: str, **sdk_options: Any) -> str:
            sdk_options["SecretId"] = name
            reply = self.client.get_secret_value(**sdk_options)
            return json.dumps({"version": reply.get("VersionId", ""), "value": reply.get("SecretString")})

    return VersionedSecretsProvider


class SecretsManagerCredentials:
    def __init__(self, secret_id: str, client: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.secret_id = secret_id
        self.clock = clock  # the age is counted on the run's clock (a virtual one in tests)
        self._fetched_at: float | None = None
        self._provider = _provider_class()(boto3_client=client) if client is not None else None
        self._refresh = False

    def refresh_next(self) -> None:
        """The next get() reads Secrets Manager again instead of the cached value."""
        self._refresh = True

    @property
    def provider(self) -> Any:
        if self._provider is None:
            from .aws import client

            # AWS_REGION as well as AWS_DEFAULT_REGION, or the region in the secret's ARN
            self._provider = _provider_class()(boto3_client=client("secretsmanager", secret_id=self.secret_id))
        return self._provider

    def _region(self) -> str:
        try:
            return str(self.provider.client.meta.region_name or "this region")
        except Exception:  # only for the message
            return "this region"

    def get(self) -> Credentials:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at >= SECRET_MAX_AGE_S
            wrapped = self.provider.get(
                self.secret_id, transform="json", max_age=SECRET_MAX_AGE_S, force_fetch=self._refresh or stale
            )
            if self._refresh or stale:
                self._fetched_at = now
            self._refresh = False
        except GetParameterError as exc:
            text = str(exc)
            if "secret value" in text:  # the secret exists, but nobody has stored its value yet
                problem = (
                    f"The secret {self.secret_id} has no value yet. Set it once after deploying: "
                    + set_secret_hint(self.secret_id)
                )
            elif "ResourceNotFound" in text or "can't find" in text or "not find" in text:
                problem = (
                    f"There is no secret {self.secret_id} in the AWS region {self._region()}. Check the secret's "
                    "name (the stack's output CredentialsSecretArn; its full ARN names the region) and the region "
                    "(AWS_REGION)."
                )
            elif "AccessDenied" in text:
                problem = "The function may not read the secret (AccessDenied): redeploy the stack unchanged."
            else:
                problem = "Secrets Manager could not be read; the next run tries again."
            raise SecretError([problem], heading="The credentials secret cannot be read") from None
        if not isinstance(wrapped, dict) or wrapped.get("value") is None:
            raise SecretError(
                ["The secret holds binary data; it must be a JSON string. " + set_secret_hint(self.secret_id)],
                heading="The credentials secret cannot be used",
            )
        return credentials_from_secret(
            wrapped["value"], version=str(wrapped.get("version", "")), secret_id=self.secret_id
        )
