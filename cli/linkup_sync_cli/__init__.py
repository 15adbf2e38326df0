"""The `linkup-sync` command line: installed by `pip install -e .`, never shipped in the Lambda layer.

Dependencies run one way: this package imports the runtime package `linkup_sync`, never the reverse.
"""
