"""Where the bridge remembers things between runs: DynamoDB in Lambda, a JSON file for local runs."""

from .model import AccountState, StateStore, StoredState, TargetState, account_key

__all__ = ["AccountState", "StateStore", "StoredState", "TargetState", "account_key"]
