"""bench.goals reads issue 10's table off a results file: ratios against the same run's plain
baseline, counts as they are, and a row that was not measured says so instead of passing."""

from __future__ import annotations

from bench import goals


def results() -> dict[str, object]:
    def row(name: str, jobs: float, ratio: float, cpu: float, p50: float, commands: float,
            scripts: float) -> dict[str, object]:
        return {"configuration": name, "jobs/s": jobs, "x plain loop": ratio, "CPU ms/job": cpu,
                "idle p50 ms": p50, "Redis cmds/job": commands, "script calls/step": scripts}

    return {
        "throughput": [row("plain loop", 150, 1.0, 6.0, 5.0, 0, 0),
                       row("ferry default worker", 75, 0.5, 18.0, 20.0, 58, 2.0),
                       row("ferry prefork -c 2", 60, 0.4, 24.0, 25.0, 70, 2.0)],
        "latency": {"points": [
            {"configuration": goals.PLAIN_8, "jobs_per_s": 50.0},
            {"configuration": goals.DEFAULT_SATURATED, "jobs_per_s": 40.0},
            {"configuration": goals.DEFAULT_SATURATED, "jobs_per_s": 60.0},  # the best point counts
        ]},
        "bulk": {"bulk_jobs_per_s": 12_000.0, "one_by_one_jobs_per_s": 1_500.0, "bytes_per_job": 1400.0},
    }


def by_figure() -> dict[str, goals.Goal]:
    return {g.figure: g for g in goals.evaluate(results())}


def test_ratios_are_taken_against_the_same_runs_plain_baseline():
    found = by_figure()
    default_50ms = found["default `ferry worker` at 50 ms per call, vs plain with 8 threads"]
    assert (default_50ms.measured, default_50ms.met) == ("1.20x", True)
    cpu = found["CPU per job, all processes, default worker vs the plain loop"]
    assert cpu.measured.startswith("3.0x") and cpu.met is False
    latency = found["idle latency p50, one job at a time, default worker vs plain"]
    assert latency.measured.startswith("4.0x") and latency.met is False


def test_counts_and_submission_rates_are_read_as_they_are():
    found = by_figure()
    assert found["Redis commands per job (Celery's own included)"].met is True
    round_trips = "Ferry's own Redis round trips per step (Lua transitions; the submit's script included)"
    assert found[round_trips].measured == "2.0"
    assert found["submission, Python API one by one"].met is False
    assert found["Redis memory per queued job (record + indexes + message)"].measured == "1.37 KB"


def test_a_figure_missing_from_the_results_is_not_counted_as_met():
    threads_16 = by_figure()["`--pool threads -c 16` (one process) at 50 ms per call, vs plain with 8 threads"]
    assert (threads_16.measured, threads_16.met) == ("not measured", None)
    assert "| not measured | - |" in goals.markdown(goals.evaluate(results()))
