"""The OpenWhisk action "dist-train": `main(args)` trains on one shard against the parameter server.

`actions.main` is the entry (the same function OpenWhisk's Python runtime calls); `actions.server`
is the Docker-action protocol server that the image and the local invoker run around it.
"""

# The function `owtrain action serve` calls for each /run unless --entry names another. Defined here,
# not in actions.server, so that building the CLI does not import Flask and gevent.
DEFAULT_ENTRY = "actions.main:main"
