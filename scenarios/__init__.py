"""Real .NET processes in real trouble, dumped with the runtime's createdump.

`scenarios.dumps.ensure_dump` builds, runs and dumps a scenario on demand and
caches the result outside the repository; `scenarios.sos` runs SOS
(`dotnet-dump analyze`) on a dump as the tests' oracle.
"""
