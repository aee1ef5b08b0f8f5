"""The one-machine run, `owtrain local`: every part of owtrain started, joined and stopped on this machine."""
