"""Where the bridge remembers things between runs: DynamoDB in Lambda, a JSON file for local runs."""

from .model import AccountState, StoredState, TargetState, account_key

__all__ = ["AccountState", "StoredState", "TargetState", "account_key"]
