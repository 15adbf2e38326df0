"""E-mails written by the bridge: one SNS Publish to the stack's alert topic per message.

The function's role may `sns:Publish` on that topic only. The client is made on first use, so runs
without an incident never import or build it.
"""

from __future__ import annotations

from typing import Any

from .aws import ClientSlot


class SnsAlerts:
    def __init__(self, topic_arn: str, client: Any = None, *, secret_id: str | None = None) -> None:
        self.topic_arn = topic_arn
        self._client: ClientSlot[Any] = ClientSlot("sns", client, secret_id=secret_id)
        self.published = 0

    @property
    def client(self) -> Any:
        return self._client.get()

    def publish(self, subject: str, body: str) -> None:
        self.client.publish(TopicArn=self.topic_arn, Subject=subject, Message=body)
        self.published += 1
