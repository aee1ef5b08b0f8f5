"""Serving what owtrain trained: a versioned model repository, a batching prediction server, the
`predict` OpenWhisk action and event-driven inference. The top floor: it imports the foundation
(`owtrain/`) and the parts' public interfaces; nothing below imports it."""
