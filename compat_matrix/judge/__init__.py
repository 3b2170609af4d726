"""The matrix file held against results: expectations for the report, the history check of
expectation ranges, and pins."""
