"""cslake as Airflow DAGs. Written for Airflow 3 (`airflow.sdk`); the imports fall back to Airflow
2.10's, and everything else is the same on both.

`cslake_daily` (02:00 UTC): one task per step of the day, for the day that has just ended (below):
ingest, features, train (only while the lake has no model yet, so a fresh lake scores on its first
night), score, act, analytics and publish (upserts the day's analytics tables into PostgreSQL when
cslake.toml has [publish.postgres]; does nothing otherwise). Each task's JSON summary (the last line
cslake prints) is its XCom value. `cslake_weekly_train` (Sunday 04:00): retrains the churn model; a
new model is promoted only if it is not worse than the current one on the same test window.
`cslake_weekly_report` (Monday 07:00): the executive report (PDF and HTML) of the day that ended,
written to CSLAKE_REPORTS/<date>/ and delivered to the channels of [report] deliver (when it names
any).

The date. Every task works on `data_interval_end - 1 day`: the day that has ended when the run
starts. That is the same day on Airflow 3 (a cron schedule's interval ends at its logical date, so
`{{ ds }}` is the day that has just begun) and on Airflow 2.10 (`{{ ds }}` is the start of the interval
that ended). A manual run can name the day: trigger it with the configuration {"as_of": "2026-11-25"}.

Configure with environment variables on the workers; they are read when a task runs, not when the
scheduler parses this file, and never put credentials in the DAG:
  CSLAKE_BIN     the cslake binary (default: `cslake` on PATH)
  CSLAKE_CONFIG  cslake.toml, an absolute path (sources, mapping, churn definition). Relative paths in
                 it are relative to its own folder. API tokens come from the variables it names
                 (HUBSPOT_TOKEN, STRIPE_API_KEY, ...)
  CSLAKE_LAKE    the lake: an absolute folder or a URL such as s3://analytics/cslake (AWS_* or the
                 usual credential chain give its credentials); default: `lake` in cslake.toml
  CSLAKE_REPORTS an absolute folder for the weekly report, one sub-folder per date (default:
                 `reports` inside a local lake's folder; required when the lake is a URL)
Tasks run in a temporary folder, so relative paths are refused before cslake starts.

Exit codes: 1 means the step failed and is retried with backoff; 2 (configuration or credentials)
and 3 (input rejected above the threshold; the reasons are in ops.quarantine) fail the task at once,
since a retry would fail the same way until the configuration or the data is fixed.

`python cslake_dags.py 2026-11-25` prints the command each task runs for that day with the current
environment: a quick check of a deployment.
"""

import json
import os
import shlex
import subprocess
import sys
from datetime import date, timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.decorators import task
    from airflow.exceptions import AirflowFailException

# cslake's exit codes that a retry cannot fix
PERMANENT = {
    2: "configuration or credentials (fix cslake.toml or the environment, then clear the task)",
    3: "input rejected above the threshold (the reasons are in ops.quarantine)",
}

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=3),
}


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def environment() -> dict:
    """Where cslake, its configuration, the lake and the reports are: read from the worker's
    environment when the task runs."""
    env = os.environ
    config = env.get("CSLAKE_CONFIG", "")
    lake = env.get("CSLAKE_LAKE", "")
    reports = env.get("CSLAKE_REPORTS", "")
    if not config:
        raise AirflowFailException("CSLAKE_CONFIG is not set on the worker: the absolute path of cslake.toml")
    lake_path = lake[len("file://"):] if lake.startswith("file://") else lake
    for name, value in [("CSLAKE_CONFIG", config), ("CSLAKE_LAKE", "" if is_url(lake) else lake_path),
                        ("CSLAKE_REPORTS", reports)]:
        if value and not os.path.isabs(value):
            raise AirflowFailException(
                f"{name}={value!r} is relative, and tasks run in a temporary folder: give an absolute path"
            )
    if not reports and lake and not is_url(lake):
        reports = os.path.join(lake_path, "reports")
    return {"bin": env.get("CSLAKE_BIN", "cslake"), "config": config, "lake": lake, "reports": reports}


def day_that_ended(context) -> str:
    """The day a run works on: the one named in a manual run's configuration, else the day before
    the end of the run's data interval."""
    run = context.get("dag_run")
    conf = (getattr(run, "conf", None) or {}) if run is not None else {}
    if conf.get("as_of"):
        try:
            return date.fromisoformat(str(conf["as_of"])).isoformat()
        except ValueError:
            raise AirflowFailException(f"as_of {conf['as_of']!r} in the run's configuration is not YYYY-MM-DD")
    end = context.get("data_interval_end") or getattr(run, "run_after", None) or context["logical_date"]
    return (end - timedelta(days=1)).date().isoformat()


def command(env: dict, actor: str, args: list) -> list:
    """The cslake call: the actor names the DAG run in ops.runs."""
    lake = ["--lake", env["lake"]] if env["lake"] else []
    return [env["bin"], *lake, "--config", env["config"], "--actor", actor, *args]


def run_cslake(args: list, actor: str) -> dict:
    """Runs cslake, streams its output to the task log and returns its JSON summary. Exit codes
    2 and 3 fail the task without retries; any other failure is retried."""
    env = environment()
    cmd = command(env, actor, args)
    print("$", shlex.join(cmd), flush=True)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    except FileNotFoundError:
        raise AirflowFailException(f"cslake not found: {env['bin']!r} (set CSLAKE_BIN on the worker)")
    summary = None
    for line in proc.stdout:
        print(line, end="", flush=True)
        # the summary is the last JSON object with a status; log lines are text
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "status" in parsed:
                summary = parsed
    code = proc.wait()
    if code in PERMANENT:
        raise AirflowFailException(f"cslake exited {code}: {PERMANENT[code]}")
    if code != 0:
        raise RuntimeError(f"cslake exited {code}" + (" (killed)" if code < 0 else "") + ": retried")
    return xcom(summary or {})


def xcom(summary: dict) -> dict:
    """The summary as the task's XCom value: whole when small; above 64 KB (a day's enrolments
    of a large book) its top-level figures, since XCom lives in Airflow's database."""
    if len(json.dumps(summary)) <= 65536:
        return summary
    small = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
    small["xcom_truncated"] = "the summary is over 64 KB: the whole of it is in the task log"
    return small


def cslake_task(task_id: str, args):
    """A task that runs `cslake ARGS`, where `args(day, env)` builds the arguments for the day."""

    @task(task_id=task_id)
    def step(**context):
        day = day_that_ended(context)
        actor = f"airflow:{context['dag'].dag_id}:{context['run_id']}"
        return run_cslake(args(day, environment()), actor)

    return step()


def report_args(day: str, env: dict) -> list:
    if not env["reports"]:
        raise AirflowFailException("set CSLAKE_REPORTS on the worker (an absolute folder): the lake is not a folder")
    out = os.path.join(env["reports"], day)
    deliver = ["--deliver"] if delivers(env["config"]) else []
    return ["report", "--as-of", day, "--format", "pdf,html", "--out", out, *deliver]


def delivers(config: str) -> bool:
    """Whether cslake.toml names channels in [report] deliver (without any, the report is only
    written). Unreadable files are cslake's to report, so they count as delivering."""
    try:
        import tomllib  # Python 3.11+
        with open(config, "rb") as f:
            return bool(tomllib.load(f).get("report", {}).get("deliver"))
    except (ImportError, OSError, ValueError):
        return True


DAILY = [
    ("ingest", lambda d, env: ["run", "--as-of", d, "--only", "ingest"]),
    ("features", lambda d, env: ["run", "--as-of", d, "--only", "features"]),
    # trains only when the lake has no model yet: the weekly DAG retrains
    ("train", lambda d, env: ["run", "--as-of", d, "--only", "train"]),
    ("score", lambda d, env: ["run", "--as-of", d, "--only", "score"]),
    ("act", lambda d, env: ["run", "--as-of", d, "--only", "act"]),
    ("analytics", lambda d, env: ["run", "--as-of", d, "--only", "analytics"]),
    ("publish", lambda d, env: ["run", "--as-of", d, "--only", "publish"]),
]
WEEKLY_TRAIN = [("train", lambda d, env: ["run", "--as-of", d, "--only", "train", "--retrain"])]
WEEKLY_REPORT = [("report", report_args)]


def dag(dag_id: str, schedule: str, description: str, steps: list) -> DAG:
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["cslake"],
    ) as d:
        previous = None
        for task_id, args in steps:
            t = cslake_task(task_id, args)
            if previous is not None:
                previous >> t
            previous = t
    return d


daily = dag("cslake_daily", "0 2 * * *",
            "Land sources, build features, score every account, act on the scores, update the BI tables", DAILY)
weekly_train = dag("cslake_weekly_train", "0 4 * * 0",
                   "Retrain the churn model; promoted only if not worse than the current one", WEEKLY_TRAIN)
weekly_report = dag("cslake_weekly_report", "0 7 * * 1",
                    "The executive report as PDF and HTML, delivered by e-mail or webhook ([report] deliver)",
                    WEEKLY_REPORT)

if __name__ == "__main__":
    day = date.fromisoformat(sys.argv[1]).isoformat()
    env = environment()
    for dag_id, steps in [("cslake_daily", DAILY), ("cslake_weekly_train", WEEKLY_TRAIN),
                          ("cslake_weekly_report", WEEKLY_REPORT)]:
        for task_id, args in steps:
            print(f"{dag_id}.{task_id}:", shlex.join(command(env, f"airflow:{dag_id}:manual", args(day, env))))
