"""The `owtrain` command line: the top floor, which collects each part's sub-commands."""
