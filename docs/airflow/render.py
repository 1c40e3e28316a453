"""Loads the DAG file the way the scheduler does (a DagBag: import errors fail here) and prints, as
JSON, each task's command rendered for a logical date: {"dag_id": [[task_id, command], ...]} in
dependency order. The test suite runs the commands it prints; handy to check a deployment too:
    AIRFLOW_HOME=/tmp/af python docs/airflow/render.py 2026-11-25
"""

import datetime
import json
import pathlib
import sys
import types

import jinja2
from airflow.dag_processing.dagbag import DagBag


def main(ds):
    bag = DagBag(dag_folder=str(pathlib.Path(__file__).with_name("cslake_dags.py")))
    if bag.import_errors:
        sys.exit(f"DAG import errors: {bag.import_errors}")

    # the Airflow macros the DAGs use, with Airflow's semantics
    macros = types.SimpleNamespace(
        ds_add=lambda d, days: (datetime.date.fromisoformat(d) + datetime.timedelta(days=days)).isoformat()
    )

    out = {}
    for dag_id in sorted(bag.dag_ids):
        dag = bag.dags[dag_id]
        tasks = []
        for task in dag.topological_sort():
            context = {"ds": ds, "run_id": f"scheduled__{ds}", "dag": dag, "macros": macros}
            command = jinja2.Template(task.bash_command, undefined=jinja2.StrictUndefined).render(context)
            tasks.append([task.task_id, command, task.retries])
        out[dag_id] = tasks
    print(json.dumps(out))


# Airflow parses every Python file of a DAGs folder that mentions DAGs: imported, this file does
# nothing (and .airflowignore keeps the scheduler from trying)
if __name__ == "__main__":
    main(sys.argv[1])
