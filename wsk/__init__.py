"""Invocation: the OpenWhisk REST client, the `Invoker` backends, the fan-out driver and the event bridge."""
