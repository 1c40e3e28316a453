"""cslake as Airflow DAGs (Airflow 3; the same code runs on 2.10 with `airflow.sdk` swapped for
`airflow`).

`cslake_daily`: one task per step of the day, `{{ ds }}` as the logical date, retries with
backoff, and each task's JSON summary line (the last line cslake prints) pushed to XCom by
BashOperator; `publish` upserts the day's analytics tables into PostgreSQL when cslake.toml has
[publish.postgres] (and does nothing otherwise). `cslake_weekly_train`: retrains the churn model
once a week; a new model is promoted only if it is not worse than the current one on the same test
window. `cslake_weekly_report`: the executive report (PDF and HTML) every Monday, delivered to the
channels of [report] deliver; Airflow owns the schedule, cslake the content.

Configure with environment variables on the workers (never put credentials in the DAG):
  CSLAKE_BIN     the cslake binary (default: `cslake` on PATH)
  CSLAKE_LAKE    the lake, e.g. s3://analytics/cslake (AWS_* variables give its credentials)
  CSLAKE_CONFIG  cslake.toml (sources, mapping, churn definition); API tokens come from the
                 variables it names (HUBSPOT_TOKEN, STRIPE_API_KEY, ...)
  CSLAKE_REPORTS where the weekly report's files go (default ./reports), one folder per date

Exit codes: 1 the step failed (retried), 2 configuration or credentials, 3 input rejected above
the threshold (retries will fail the same way until the data or configuration is fixed; the
reasons are in ops.quarantine).
"""

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

CSLAKE = os.environ.get("CSLAKE_BIN", "cslake")
LAKE = os.environ.get("CSLAKE_LAKE", "./lake")
CONFIG = os.environ.get("CSLAKE_CONFIG", "cslake.toml")
REPORTS = os.environ.get("CSLAKE_REPORTS", "./reports")

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=3),
}


def cslake(*args: str) -> str:
    """The shell command for one cslake call; the actor names the DAG run in ops.runs."""
    return " ".join(
        [CSLAKE, "--lake", LAKE, "--config", CONFIG, "--actor", "airflow:{{ dag.dag_id }}:{{ run_id }}", *args]
    )


with DAG(
    dag_id="cslake_daily",
    description="Land sources, build features, score every account, act on the scores, update the BI tables for the logical date",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["cslake"],
) as daily:
    previous = None
    for step in ["ingest", "features", "score", "act", "analytics", "publish"]:
        task = BashOperator(
            task_id=step,
            bash_command=cslake("run", "--as-of", "{{ ds }}", "--only", step),
            do_xcom_push=True,
        )
        if previous is not None:
            previous >> task
        previous = task

with DAG(
    dag_id="cslake_weekly_train",
    description="Retrain the churn model; promoted only if not worse than the current one",
    schedule="0 4 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["cslake"],
) as weekly:
    BashOperator(
        task_id="train",
        bash_command=cslake("run", "--as-of", "{{ ds }}", "--only", "train"),
        do_xcom_push=True,
    )

with DAG(
    dag_id="cslake_weekly_report",
    description="The executive report as PDF and HTML, delivered by e-mail or webhook ([report] deliver)",
    schedule="0 7 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["cslake"],
) as report:
    BashOperator(
        task_id="report",
        # the report of the last complete day: the daily DAG of {{ ds }} has run by Monday 07:00
        bash_command=cslake(
            "report", "--as-of", "{{ macros.ds_add(ds, -1) }}", "--format", "pdf,html",
            "--out", REPORTS + "/{{ macros.ds_add(ds, -1) }}", "--deliver",
        ),
        do_xcom_push=True,
    )
