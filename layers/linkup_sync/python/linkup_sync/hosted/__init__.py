"""The hosted stack: one deployment that runs many follower accounts (hosted.yaml).

schedule (who is due when) -> dispatch (due accounts to the queue) -> worker (one run_once per message),
with the registry (accounts, in the state table) and vault (their credentials, KMS-encrypted).
"""
