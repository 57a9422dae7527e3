"""Keeping what worked: the committed state as one truth (`state`), its export to sysctl.d,
TuneD, JSON and a rollback script (`export`), drift and clash detection (`drift`), and re-applying
it through the ordinary path (`reapply`)."""
