"""Each task of the sync DAGs ends its log with what its process cost (peak memory, CPU), so that a data
engineer sizing workers reads it where they already look, and the benchmarks read it from the same place.

An Airflow listener: the task runner calls it in the task's own process, after the task's work.
Top-level module on purpose: plugins/.airflowignore hides the audience_sync package from the loader.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from audience_sync.resources import process_usage

log = logging.getLogger("audience_sync.resources")
OUR_TAGS = {"hubspot", "aep"}  # both DAGs carry them; other teams' DAGs in the deployment get no extra line


class TaskResourceListener:
    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance) -> None:
        self._log(task_instance)

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:
        self._log(task_instance)

    @staticmethod
    def _log(task_instance) -> None:
        dag = getattr(getattr(task_instance, "task", None), "dag", None)
        if dag is not None and OUR_TAGS <= set(dag.tags or ()):
            log.info("%s: %s", task_instance.task_id, process_usage().describe())


class AudienceSyncResourcesPlugin(AirflowPlugin):
    name = "audience_sync_resources"
    listeners = [TaskResourceListener()]
