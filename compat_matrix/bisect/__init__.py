"""Bisect: the first release where an outcome changes, recorded as an expectation, and the
nightly's bisect and triage of a new release."""
