"""Great Expectations 1.x suites for raw impressions, raw feedback and the joined table, with
per-period JSON results, a self-contained HTML page per result and quarantine. See
:mod:`reloop.data.validate.run`.

Importing this package does not import Great Expectations."""
