"""Ferry's benchmarks: real Redis, real sandbox, real ``ferry worker`` processes, each figure
set against a plain-requests baseline measured in the same run. See bench/README.md."""
